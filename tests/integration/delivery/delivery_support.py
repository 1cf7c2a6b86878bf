"""Servers and certificates for the real-delivery tests (imported by this directory's conftest and tests).

`SelfSignedCert`   an EC key and a self-signed certificate for 127.0.0.1/localhost, written to PEM files,
                   with a server context (for aiosmtpd) and a client context that trusts only it.
`SecureSmtpServer` a threaded aiosmtpd server that can speak implicit TLS, offer STARTTLS and require AUTH;
                   it records, per accepted message, whether the session was encrypted and who logged in.
`RawSmtpServer`    a hand-written socket server for faults aiosmtpd cannot produce: a server that never
                   greets, or one that hangs up in the middle of DATA. Scripted per connection.
`PortReceiver`     a minimal HTTP report receiver bound to a given port (a receiver that comes back up).
`DispatchWorld`    the dispatcher over real SQLite stores and a frozen clock.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.memory.clock import FrozenClock
from adapters.sqlite.accounts import SqliteAccountStore, SqliteServiceState
from adapters.sqlite.database import SqliteDatabase
from adapters.sqlite.messages import SqliteDispatchQueue, SqliteMessageStore
from core.model import Account, Message, MessageRecord
from core.services.dispatch import DispatchConfig, DispatchService
from ports.mail_sender import MailSender

LOCALHOST = "127.0.0.1"
T0 = 1_800_000_000.0
"""Start of every frozen clock here (the API's clock.frozen_start too)."""

StartApi = Callable[..., Awaitable[httpx.AsyncClient]]


# --------------------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class SelfSignedCert:
    certfile: Path
    keyfile: Path
    cert_pem: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server certificate and its host name against this certificate only."""
        return ssl.create_default_context(cadata=self.cert_pem)


def make_self_signed_cert(directory: Path) -> SelfSignedCert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOCALHOST)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOCALHOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert_pem)
    keyfile.write_bytes(key_pem)
    return SelfSignedCert(certfile, keyfile, cert_pem.decode("ascii"))


# --------------------------------------------------------------------------------------- SMTP (aiosmtpd)


@dataclass(frozen=True)
class SecureMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    encrypted: bool
    """The session was TLS-protected when DATA completed (implicit TLS or after STARTTLS)."""
    login: str | None
    """The user that authenticated in this session, None without AUTH."""

    @property
    def email(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class AuthAttempt:
    login: str
    success: bool
    encrypted: bool


class SecureSmtpServer:
    """Recording handler with TLS and AUTH facts. `users` maps login -> password (None: AUTH not offered)."""

    def __init__(self, host: str, port: int, users: dict[str, str] | None) -> None:
        self.host = host
        self.port = port
        self.users = users
        self.messages: list[SecureMail] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.connections = 0
        self.starttls_sessions = 0

    def account(self, account_id: str = "acc", **fields: Any) -> Account:
        values: dict[str, Any] = {"host": self.host, "port": self.port}
        values.update(fields)
        return Account(id=account_id, **values)

    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = self.users is not None and self.users.get(login) == password
        self.auth_attempts.append(AuthAttempt(login, ok, _encrypted(server)))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        self.starttls_sessions += 1
        return True

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        login = session.auth_data if session.authenticated else None
        self.messages.append(
            SecureMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), content, _encrypted(server), login)
        )
        return "250 OK"


def _encrypted(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _PortZeroController(Controller):
    """Controller on port 0 whose start-up probe connects to the port actually bound; counts connections."""

    def __init__(self, recorder: SecureSmtpServer, **kwargs: Any) -> None:
        super().__init__(recorder, **kwargs)
        self.recorder = recorder

    def factory(self) -> SMTP:
        self.recorder.connections += 1
        return super().factory()

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def start_secure_smtp(
    cert: SelfSignedCert,
    *,
    implicit_tls: bool = False,
    starttls: bool = False,
    require_starttls: bool = False,
    users: dict[str, str] | None = None,
    auth_require_tls: bool = True,
) -> tuple[SecureSmtpServer, Callable[[], None]]:
    """Start a server; returns it and its stop function."""
    recorder = SecureSmtpServer(LOCALHOST, 0, users)
    kwargs: dict[str, Any] = {"hostname": LOCALHOST, "port": 0, "server_hostname": "secure.test"}
    if implicit_tls:
        kwargs["ssl_context"] = cert.server_context()
    if starttls:
        kwargs["tls_context"] = cert.server_context()
        kwargs["require_starttls"] = require_starttls
    if users is not None:
        kwargs["authenticator"] = recorder.authenticator
        kwargs["auth_require_tls"] = auth_require_tls
    controller = _PortZeroController(recorder, **kwargs)
    controller.start()
    recorder.port = controller.port
    recorder.connections = 0  # forget the start-up probe
    return recorder, controller.stop


# --------------------------------------------------------------------------------------- SMTP (raw sockets)


@dataclass
class RawMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class RawSmtpServer:
    """Speaks just enough SMTP by hand. `script` lists one behaviour per connection, in order:

    "normal"          greets and accepts everything
    "hang"            accepts the TCP connection and never says a word
    "drop_in_data"    answers 354 to DATA, reads a little of the message, then closes the socket
    Connections beyond the script are "normal".
    """

    script: list[str]
    host: str = LOCALHOST
    port: int = 0
    connections: int = 0
    messages: list[RawMail] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _sock: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def account(self, account_id: str = "acc", **fields: Any) -> Account:
        values: dict[str, Any] = {"host": self.host, "port": self.port, "starttls": "off"}
        values.update(fields)
        return Account(id=account_id, **values)

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(16)
        sock.settimeout(0.05)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            behaviour = self.script[self.connections] if self.connections < len(self.script) else "normal"
            self.connections += 1
            self._spawn(self._serve, conn, behaviour)

    def _serve(self, conn: socket.socket, behaviour: str) -> None:
        with conn:
            if behaviour == "hang":
                self._stop.wait()
                return
            conn.settimeout(0.05)
            reader = _LineReader(conn, self._stop)
            conn.sendall(b"220 raw.test ESMTP\r\n")
            mail = RawMail("", [], b"")
            while (line := reader.line()) is not None:
                verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
                if verb == "EHLO":
                    conn.sendall(b"250-raw.test\r\n250 8BITMIME\r\n")
                elif verb == "MAIL":
                    mail = RawMail(_address(line), [], b"")
                    conn.sendall(b"250 OK\r\n")
                elif verb == "RCPT":
                    mail.rcpt_tos.append(_address(line))
                    conn.sendall(b"250 OK\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    if behaviour == "drop_in_data":
                        reader.line()  # a first line of the message, then hang up mid-transfer
                        return
                    mail.data = reader.until_dot()
                    self.messages.append(mail)
                    conn.sendall(b"250 OK queued\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:  # RSET, NOOP, ...
                    conn.sendall(b"250 OK\r\n")


def _address(line: bytes) -> str:
    text = line.decode("ascii", "replace")
    return text[text.find("<") + 1 : text.find(">")]


class _LineReader:
    def __init__(self, conn: socket.socket, stop: threading.Event) -> None:
        self._conn = conn
        self._stop = stop
        self._buffer = b""

    def line(self) -> bytes | None:
        while b"\r\n" not in self._buffer:
            if self._stop.is_set():
                return None
            try:
                chunk = self._conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def until_dot(self) -> bytes:
        lines: list[bytes] = []
        while (line := self.line()) is not None and line != b".":
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"\r\n".join(lines) + b"\r\n"


# --------------------------------------------------------------------------------------- HTTP


@dataclass
class PortReceiver:
    """A report receiver on a port chosen by the test (to bring a 'down' proxy_sync_url back up)."""

    port: int
    bodies: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def reports(self) -> list[dict[str, Any]]:
        return [item for body in self.bodies for item in body.get("delivery_report", [])]

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.bodies.append(json.loads(body))
                payload = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------- dispatch


@dataclass
class DispatchWorld:
    """The dispatcher over real SQLite stores and a frozen clock, sending through a real MailSender."""

    db: SqliteDatabase
    clock: FrozenClock

    def __post_init__(self) -> None:
        self.messages = SqliteMessageStore(self.db)
        self.queue = SqliteDispatchQueue(self.db)
        self.accounts = SqliteAccountStore(self.db)
        self.state = SqliteServiceState(self.db)

    async def add_account(self, account: Account) -> Account:
        return await self.accounts.upsert(account)

    async def enqueue(self, *messages: Message) -> None:
        assert await self.messages.enqueue(messages, self.clock.now()) == []

    async def record(self, message_id: str) -> MessageRecord:
        record = await self.messages.get(message_id)
        assert record is not None, message_id
        return record

    def dispatcher(self, sender: MailSender, config: DispatchConfig) -> DispatchService:
        return DispatchService(self.queue, self.accounts, self.state, sender, self.clock, config, jitter=lambda: 0.5)
