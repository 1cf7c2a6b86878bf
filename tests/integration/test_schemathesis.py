"""Property-based API tests: schemathesis fuzzes every operation of the app's own OpenAPI document.

The app runs for real: uvicorn on a free 127.0.0.1 port in a background thread, lifespan on, a SQLite
file, test_mode (so the /test/* endpoints exist and are fuzzed too), in-memory delivery reports, and an
API token that every generated request carries (X-API-Token). Every response must pass schemathesis'
conformance checks: not_a_server_error (no 5xx), status_code_conformance (status documented),
content_type_conformance and response_schema_conformance (body matches the documented schema).

The schema is the one create_app(...).openapi() builds (no I/O: resources open in the lifespan), loaded
at import time so schemathesis makes one test item per operation; test_served_schema_is_the_fuzzed_one
checks that the running server serves exactly that document. (schemathesis.pytest.from_fixture cannot be
used here: schemathesis 4.32.5's lazy loader reads `Function._nodeid`, which pytest 9.2 no longer has.)

Account accA exists before fuzzing, and a map_case hook points every other generated add-messages entry
at it with well-formed addresses and ids from a small pool, so some entries are queued (and sent by
run-now into the test outbox) and GET /messages/{message_id} sometimes finds a stored message.

Every error answer must also be the app's envelope {"ok": false, "detail": "<text>"}, including those
the framework raises itself (unknown path, wrong method, unparseable body). The first run found five
app bugs (422 bodies not matching the document, undocumented /test errors, framework errors without
"ok", a frozen clock that overflowed, NaN deferred_ts silently dropped); all are fixed and guarded here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from entrypoints.api.app import create_app
from entrypoints.settings import Settings

TOKEN = "schemathesis-token"
AUTH = {"X-API-Token": TOKEN}
FROZEN_START = 1_800_000_000.0
MAX_EXAMPLES = 30
SEED = 20240601
ACCOUNT = "accA"
MESSAGE_IDS = [f"fuzz-{n}" for n in range(8)]
YEAR_9999 = 253_402_300_799.0

CheckFunction = Any
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _settings(db_path: Path) -> Settings:
    return Settings(
        server={"api_token": TOKEN},
        storage={"backend": "sqlite", "db_path": str(db_path)},
        delivery={"test_mode": True},
        sync={"backend": "memory"},
        clock={"frozen_start": FROZEN_START},
    )


OPENAPI: dict[str, Any] = create_app(_settings(Path("never-opened.db"))).openapi()
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=schemathesis.Config.from_dict(
        {
            "headers": AUTH,
            "seed": SEED,
            "suppress-health-check": ["all"],
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        }
    ),
)


@schema.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """Ground part of the generated data in what exists, so the success paths are fuzzed too."""
    operation = context.operation
    if operation is None:
        return case
    if operation.label == "POST /commands/add-messages" and isinstance(case.body, dict):
        entries = case.body.get("messages")
        if isinstance(entries, list):
            for index, entry in enumerate(entries):
                if isinstance(entry, dict) and index % 2 == 0:
                    for unchecked in ("cc", "bcc", "reply_to", "return_path", "headers", "attachments", "priority"):
                        entry.pop(unchecked, None)
                    entry.update(
                        id=MESSAGE_IDS[len(str(entry.get("id"))) % len(MESSAGE_IDS)],
                        account_id=ACCOUNT,
                        to=["rcpt@example.org"],
                        **{"from": "Fuzz <fuzz@example.com>"},
                    )
    elif operation.label == "GET /messages/{message_id}" and case.path_parameters:
        current = str(case.path_parameters.get("message_id", ""))
        if len(current) % 2 == 0:
            case.path_parameters["message_id"] = MESSAGE_IDS[len(current) % len(MESSAGE_IDS)]
    return case


def _assert_error_envelope(body: Any) -> None:
    """The app's error body: {"ok": false, "detail": "<text>"}."""
    assert isinstance(body, dict) and set(body) <= {"ok", "detail"}, body
    assert body.get("ok", False) is False and isinstance(body.get("detail"), str), body


def _json_object(response: schemathesis.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    failures: set[str] = field(default_factory=set)
    """Operations with at least one failing case (hypothesis stops an operation at its first failure)."""
    queued: int = 0

    def lines(self) -> list[str]:
        return [
            f"schemathesis: {len(self.operations)} operations, {self.cases} cases, {len(self.failures)} failures",
            f"schemathesis: messages queued by fuzzed batches: {self.queued}",
        ]


class _SummaryPlugin:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "schemathesis")
        for line in self.tally.lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Tally:
    """Counts cases; its lines are printed in pytest's terminal summary."""
    counted = Tally()
    request.config.pluginmanager.register(_SummaryPlugin(counted), f"schemathesis-tally-{id(counted)}")
    return counted


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under uvicorn in a background thread, lifespan on, with account accA created."""
    app = create_app(_settings(tmp_path_factory.mktemp("schemathesis") / "asyncmail.db"))
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-schemathesis", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            pytest.fail("uvicorn did not start the app (see the captured log)")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        response = httpx.post(f"{url}/account", headers=AUTH, json={"id": ACCOUNT, "host": "smtp.invalid"}, timeout=10)
        assert response.status_code == 200, response.text
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "uvicorn did not shut down"


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case: schemathesis.Case, base_url: str, tally: Tally) -> None:
    tally.operations.add(case.operation.label)
    tally.cases += 1
    try:
        response = case.call(base_url=base_url, headers=AUTH)
        case.validate_response(response, checks=CHECKS, headers=AUTH)
        if response.status_code >= 400:
            _assert_error_envelope(_json_object(response))
    except BaseException:  # schemathesis' FailureGroup is a BaseExceptionGroup
        tally.failures.add(case.operation.label)
        raise
    if case.operation.label == "POST /commands/add-messages" and response.status_code == 200:
        tally.queued += int(response.json()["queued"])


async def test_frozen_clock_stays_in_range(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path / "clock.db"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://asyncmail.test", headers=AUTH
        ) as client,
    ):
        for body in ('{"set": 1e309}', '{"advance": 1e308}', '{"advance": 1e308}', '{"set": 1e15}'):
            response = await client.post("/test/clock", content=body, headers={"content-type": "application/json"})
            assert response.status_code in (400, 422), (body, response.text)
            now = (await client.get("/test/clock")).json()["now"]
            assert isinstance(now, float) and FROZEN_START <= now <= YEAR_9999, (body, now)


def test_served_schema_is_the_fuzzed_one(base_url: str) -> None:
    response = httpx.get(f"{base_url}/openapi.json", headers=AUTH, timeout=10)
    assert response.status_code == 200
    assert response.json() == OPENAPI


def test_unauthenticated_request_gets_401(base_url: str) -> None:
    for headers in ({}, {"X-API-Token": "wrong"}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{base_url}/status", headers=headers, timeout=10)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["ok"] is False
    assert httpx.get(f"{base_url}/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200
