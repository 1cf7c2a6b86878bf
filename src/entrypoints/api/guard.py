"""ASGI middleware in front of every route, docs included: API token and request body size.

The token is accepted as `X-API-Token: <token>` or `Authorization: Bearer <token>` (for Prometheus)
and compared in constant time. Bodies are never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DOC_PATHS = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})


class BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    def __init__(self, app: ASGIApp, token: str | None, protect_docs: bool, max_body_bytes: int) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._protect_docs = protect_docs
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._token is not None and not self._open_path(scope["path"]) and not self._authorized(scope):
            await _reply(send, 401, "missing or wrong API token (X-API-Token or Authorization: Bearer)")
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_body:
            await _reply(send, 413, f"request body larger than {self._max_body} bytes")
            return
        await self._with_counted_body(scope, receive, send)

    def _open_path(self, path: str) -> bool:
        return not self._protect_docs and path in DOC_PATHS

    def _authorized(self, scope: Scope) -> bool:
        assert self._token is not None
        presented = b""
        for name, value in scope.get("headers", []):
            if name == b"x-api-token":
                presented = value
                break
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
        return hmac.compare_digest(presented, self._token)

    async def _with_counted_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Bodies without Content-Length (chunked) are counted as they arrive; past the limit the
        app's own answer (the framework turns the failed read into a 400) is replaced by a 413."""
        received = 0
        too_large = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_body:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if too_large:
            await _reply(send, 413, f"request body larger than {self._max_body} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"ok": False, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
