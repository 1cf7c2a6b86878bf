"""Real local infrastructure shared by the integration tests.

Fixtures (function-scoped: every test gets a fresh, empty server):

`smtp_server` -> SmtpServer
    A real aiosmtpd server on 127.0.0.1 (a free port chosen by the OS) that records what it
    accepts and can be scripted to refuse. It runs in its own thread, so it answers whether the
    test is sync or async. Point an account at it with `smtp_server.account("accA")`.

`report_receiver` -> ReportReceiver
    A real HTTP/1.1 server on 127.0.0.1 that plays the application's proxy_sync_url: it records
    every request (headers included) and answers with a settable status and body. Also threaded.

`start_api(headers=None, **sections)` -> httpx.AsyncClient
    The API through create_app() and its lifespan, on a real SQLite file (`db_path`), test_mode with
    a frozen clock at FROZEN_START and in-memory reports unless `sections` override them. Calling it
    again with the same db_path is a restart. Everything is closed at the end of the test.

`closed_port` -> int
    A port on 127.0.0.1 that nothing listens on: "server down" for SMTP or HTTP.

Both servers are synchronous underneath; their `wait_for_*` helpers are async and poll, for
tests where a background loop (not the test itself) does the sending.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from core.model import Account
from entrypoints.api.app import create_app
from entrypoints.settings import Settings

LOCALHOST = "127.0.0.1"


async def _poll(condition: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP server accepted (after DATA)."""

    mail_from: str
    """Envelope sender (MAIL FROM)."""
    rcpt_tos: tuple[str, ...]
    """Envelope recipients the server accepted (refused ones are not here)."""
    content: bytes
    """The message exactly as received (CRLF line endings)."""
    peer: tuple[str, int]
    """Client address of the connection that delivered it; equal peers mean one reused connection."""
    received_at: float = 0.0
    """time.monotonic() when the server answered 250 to DATA (for rate-limit windows)."""

    @property
    def email(self) -> EmailMessage:
        """`content` parsed with the modern email policy: `mail["Subject"]`, `mail.get_body()`, ..."""
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class SmtpServer:
    """A recording, scriptable SMTP server. All attributes are public; replies are SMTP reply lines.

    Recording:
        `messages`    every accepted message (ReceivedMail), in order
        `connections` how many client connections were opened (the start-up probe is not counted)
        `sessions`    every EHLO/HELO name seen, one per connection that greeted

    Scripting (set them any time; they apply to the next commands):
        `rcpt_replies["x@example.org"] = "550 no such user"`  refuse one recipient
        `rcpt_reply = "451 try later"`                       refuse every recipient not in rcpt_replies
        `mail_reply = "421 closing"`                         answer MAIL FROM with this
        `data_reply = "554 rejected"`                        answer DATA with this (nothing is recorded)
        `reset()` clears recordings and scripts.

    Faults:
        `disconnect_all()` hangs up every open client connection (an idle timeout, a server restart).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.messages: list[ReceivedMail] = []
        self.connections = 0
        self.sessions: list[str] = []
        self.rcpt_replies: dict[str, str] = {}
        self.rcpt_reply: str | None = None
        self.mail_reply: str | None = None
        self.data_reply: str | None = None
        self._hang_up: Callable[[], None] = lambda: None

    def disconnect_all(self) -> None:
        """Close every client connection from the server side, without a reply."""
        self._hang_up()

    def reset(self) -> None:
        self.messages.clear()
        self.connections = 0
        self.sessions.clear()
        self.rcpt_replies.clear()
        self.rcpt_reply = self.mail_reply = self.data_reply = None

    def account(self, account_id: str = "acc", **fields: Any) -> Account:
        """An Account that sends through this server; `fields` override (e.g. max_connections=1).

        The server offers neither STARTTLS nor AUTH: keep the default opportunistic STARTTLS or
        "off", and give no password (credentials over plain SMTP are refused by the sender).
        """
        values: dict[str, Any] = {"host": self.host, "port": self.port}
        values.update(fields)
        return Account(id=account_id, **values)

    async def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Wait until at least `count` messages arrived; returns them all."""
        await _poll(lambda: len(self.messages) >= count, timeout, f"{count} SMTP message(s)")
        return list(self.messages)

    # aiosmtpd handler hooks (called in the server's thread) ------------------------------------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions.append(hostname)
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        session.host_name = hostname
        self.sessions.append(hostname)
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address, self.rcpt_reply)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        self.messages.append(
            ReceivedMail(
                str(envelope.mail_from), tuple(envelope.rcpt_tos), content, tuple(session.peer), time.monotonic()
            )
        )
        return "250 OK"


class _CountingController(Controller):
    """aiosmtpd's threaded Controller on port 0: the probe connects to the port actually bound."""

    def __init__(self, recorder: SmtpServer, **kwargs: Any) -> None:
        super().__init__(recorder, **kwargs)
        self.recorder = recorder
        self.protocols: list[SMTP] = []
        recorder._hang_up = self.hang_up

    def factory(self) -> SMTP:
        self.recorder.connections += 1
        protocol = super().factory()
        self.protocols.append(protocol)
        return protocol

    def hang_up(self) -> None:
        done = threading.Event()

        def close_all() -> None:
            for protocol in self.protocols:
                if protocol.transport is not None:
                    protocol.transport.close()
            done.set()

        self.loop.call_soon_threadsafe(close_all)
        done.wait(5)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A fresh recording SMTP server on 127.0.0.1; see SmtpServer. Stopped after the test."""
    recorder = SmtpServer(LOCALHOST, 0)
    controller = _CountingController(recorder, hostname=LOCALHOST, port=0, server_hostname="smtp.test")
    controller.start()
    recorder.port = controller.port
    recorder.connections = 0  # forget the controller's start-up probe
    try:
        yield recorder
    finally:
        controller.stop()


# --------------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request the receiver got, whatever it answered."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased: `request.headers["authorization"]`."""
    body: bytes
    status: int
    """The status the receiver answered with."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ReportReceiver:
    """The application's delivery-report endpoint. Public, settable attributes:

    `url`        where to POST (http://127.0.0.1:<port>/delivery-report)
    `requests`   every request received, in order (ReceivedRequest, with headers and status answered)
    `batches`    the `delivery_report` lists of the requests answered 2xx, i.e. acknowledged batches
    `status`     the status to answer with (default 200)
    `statuses`   statuses for the next requests, consumed first: `statuses.extend([500, 500])`
    `reply`      JSON body to answer 2xx with; None (default) answers the batch's summary
                 {"sent": n, "error": n, "deferred": n}; a `str` is sent as-is (text/plain)
    `delay`      seconds to wait before answering (to provoke client timeouts)
    """

    host: str
    port: int
    requests: list[ReceivedRequest] = field(default_factory=list)
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    statuses: list[int] = field(default_factory=list)
    reply: Any = None
    delay: float = 0.0
    path: str = "/delivery-report"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    @property
    def reports(self) -> list[dict[str, Any]]:
        """Every acknowledged report item, flattened over batches."""
        return [item for batch in self.batches for item in batch]

    def reset(self) -> None:
        self.requests.clear()
        self.batches.clear()
        self.statuses.clear()
        self.status, self.reply, self.delay = 200, None, 0.0

    async def wait_for_batches(self, count: int, timeout: float = 5.0) -> list[list[dict[str, Any]]]:
        """Wait until at least `count` batches were acknowledged; returns them all."""
        await _poll(lambda: len(self.batches) >= count, timeout, f"{count} report batch(es)")
        return list(self.batches)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        status = self.statuses.pop(0) if self.statuses else self.status
        self.requests.append(ReceivedRequest(method, path, headers, body, status))
        if not 200 <= status < 300:
            return status, "application/json", json.dumps({"detail": "receiver told to fail"}).encode()
        items = _delivery_report(body)
        self.batches.append(items)
        if isinstance(self.reply, str):
            return status, "text/plain", self.reply.encode()
        reply = self.reply if self.reply is not None else _summary(items)
        return status, "application/json", json.dumps(reply).encode()


def _delivery_report(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data.get("delivery_report") if isinstance(data, dict) else None
    return list(items) if isinstance(items, list) else []


def _summary(items: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "sent": sum(1 for i in items if i.get("sent_ts") is not None),
        "error": sum(1 for i in items if i.get("error_ts") is not None),
        "deferred": sum(1 for i in items if i.get("deferred_ts") is not None),
    }


def _handler_for(receiver: ReportReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            if receiver.delay:
                threading.Event().wait(receiver.delay)
            status, content_type, payload = receiver._answer(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_GET = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def report_receiver() -> Iterator[ReportReceiver]:
    """A fresh recording HTTP receiver on 127.0.0.1; see ReportReceiver. Stopped after the test."""
    receiver = ReportReceiver(LOCALHOST, 0)
    server = ThreadingHTTPServer((LOCALHOST, 0), _handler_for(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------------- API

FROZEN_START = 1_800_000_000.0

StartApi = Callable[..., Awaitable[httpx.AsyncClient]]


def api_settings(db_path: Path, **sections: dict[str, Any]) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "storage": {"backend": "sqlite", "db_path": str(db_path)},
        "delivery": {"test_mode": True},
        "sync": {"backend": "memory"},
        "clock": {"frozen_start": FROZEN_START},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Settings(**base)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "asyncmail.db"


@pytest.fixture
async def start_api(db_path: Path) -> AsyncIterator[StartApi]:
    async with AsyncExitStack() as stack:

        async def start(headers: dict[str, str] | None = None, **sections: dict[str, Any]) -> httpx.AsyncClient:
            settings = api_settings(db_path, **sections)
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://asyncmail.test", headers=headers or {}
            )
            await stack.enter_async_context(client)
            client.app = app  # type: ignore[attr-defined]
            return client

        yield start
