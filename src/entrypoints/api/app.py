"""create_app(): the FastAPI app factory. Nothing happens at import time.

The lifespan opens resources through the container, starts the runner, and on shutdown stops the
runner (in-flight work finishes within delivery.shutdown_grace_seconds) before closing resources.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.memory.clock import FrozenClock
from adapters.memory.mail_sender import RecordingMailSender
from adapters.memory.report_sink import RecordingReportSink
from core.policies.priority import parse_priority
from core.services.admin import AdminService
from core.services.intake import IntakeService
from entrypoints.api.deps import AppServices
from entrypoints.api.guard import GuardMiddleware
from entrypoints.api.routes import router
from entrypoints.api.schemas import MessagePayload
from entrypoints.api.testing import testing_router
from entrypoints.container import Container, reporting_mode
from entrypoints.runner import Runner
from entrypoints.settings import Settings, load_settings
from ports.message_store import MessageStore

log = logging.getLogger("asyncmail")


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    settings = settings or load_settings()
    container = container or Container(settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            app.state.services = await _resolve(container, settings)
            runner = app.state.services.runner
            app.state.services.metrics.know_accounts(a.id for a in await app.state.services.admin.accounts())
            _announce(settings)
            runner.start()
        except BaseException:
            await _shutdown_resources(container)
            raise
        try:
            yield
        finally:
            await runner.stop(settings.delivery.shutdown_grace_seconds)
            await _shutdown_resources(container)

    app = FastAPI(
        title="asyncmail",
        summary="Asynchronous e-mail dispatch: REST in, SMTP out, delivery reports back.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.container = container
    app.include_router(router)
    if settings.delivery.test_mode:
        app.include_router(_testing_routes(container, settings))
    _install_error_handlers(app)
    _document_payload(app)
    token = settings.server.api_token.get_secret_value() if settings.server.api_token is not None else None
    app.add_middleware(
        GuardMiddleware,
        token=token,
        protect_docs=settings.server.protect_docs,
        max_body_bytes=settings.server.max_request_bytes,
    )
    return app


async def _resolve(container: Container, settings: Settings) -> AppServices:
    return AppServices(
        intake=cast(IntakeService, await _maybe_await(container.intake())),
        admin=cast(AdminService, await _maybe_await(container.admin())),
        messages=cast(MessageStore, await _maybe_await(container.messages())),
        runner=cast(Runner, await _maybe_await(container.runner())),
        metrics=container.metrics(),
        clock=container.clock(),
        default_priority=parse_priority(settings.delivery.default_priority),
        max_batch=settings.server.max_batch,
        test_mode=settings.delivery.test_mode,
        reporting=reporting_mode(settings.sync),
    )


async def _maybe_await(value: object) -> object:  # dependency-injector returns awaitables when a resource is async
    if hasattr(value, "__await__"):
        return await cast(Awaitable[object], value)
    return value


async def _shutdown_resources(container: Container) -> None:
    result = container.shutdown_resources()
    if result is not None:
        await result


def _testing_routes(container: Container, settings: Settings) -> APIRouter:
    sender, clock = container.mail_sender(), container.clock()
    if not isinstance(sender, RecordingMailSender) or not isinstance(clock, FrozenClock):
        raise RuntimeError("test_mode requires the recording sender and the frozen clock")
    sink = container.report_sink() if reporting_mode(settings.sync) == "memory" else None
    return testing_router(sender, clock, sink if isinstance(sink, RecordingReportSink) else None)


def _announce(settings: Settings) -> None:
    mode = reporting_mode(settings.sync)
    if mode == "off":
        log.warning(
            "no [sync] proxy_sync_url configured: delivery reporting is off; finished messages are purged "
            "%.0fs after they end",
            settings.delivery.retention_seconds,
        )
    if settings.delivery.test_mode:
        log.warning("test_mode: mail goes to the in-memory outbox (GET /test/outbox), the clock is frozen")
    if settings.storage.backend == "sqlite" and settings.storage.secret_key is None:
        log.warning(
            "no [storage] secret_key configured: SMTP passwords are stored unencrypted in %s "
            "(generate a key with `asyncmail generate-key`)",
            settings.storage.db_path,
        )
    if settings.server.api_token is None:
        log.warning(
            "no [server] api_token configured: the API is open to anyone who can reach %s:%d",
            settings.server.host,
            settings.server.port,
        )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"ok": False, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"ok": False, "detail": "; ".join(problems)}, status_code=422)


def _document_payload(app: FastAPI) -> None:
    """add-messages validates entries one by one; publish the entry schema for clients anyway."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        payload = MessagePayload.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        for name, definition in payload.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["MessagePayload"] = payload
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
