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

Known app bugs (reported, not fixed here) are tolerated narrowly by `_known_bug`, only while the served
document still has the defect, and are counted in the summary line:
  BUG-1  every 422 answer is {"ok": false, "detail": "<text>"} (the app's RequestValidationError handler),
         but the document promises FastAPI's HTTPValidationError ({"detail": [ValidationError, ...]}).
  BUG-2  the /test/* routes document no error status, yet POST /test/clock answers 400 when told to move
         the clock backwards (e.g. {"set": 0}) or when its body cannot be parsed.
  BUG-3  (counted, breaks no check) errors raised by the framework itself (unparseable body: 400, unknown
         path: 404, wrong method: 405) bypass the app's handler and lack "ok": {"detail": "..."}.
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


def _documented(operation: schemathesis.APIOperation) -> dict[str, Any]:
    responses: dict[str, Any] = OPENAPI["paths"][operation.path][operation.method.lower()]["responses"]
    return responses


def _schema_ref(response: dict[str, Any] | None) -> str:
    return str((response or {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", ""))


def _known_bug(operation: schemathesis.APIOperation, status: int) -> tuple[str, CheckFunction] | None:
    """(bug, the one check it breaks) when this answer hits a known, reported app bug; else None."""
    documented = _documented(operation)
    if status == 422 and _schema_ref(documented.get("422")).endswith("/HTTPValidationError"):
        return "BUG-1", response_schema_conformance
    if status == 400 and "400" not in documented and operation.path.startswith("/test/"):
        return "BUG-2", status_code_conformance
    return None


def _assert_error_envelope(body: Any) -> None:
    """The app's error body: {"ok": false, "detail": "<text>"} ("ok" missing: BUG-3)."""
    assert isinstance(body, dict) and set(body) <= {"ok", "detail"}, body
    assert body.get("ok", False) is False and isinstance(body.get("detail"), str), body


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    failures: set[str] = field(default_factory=set)
    """Operations with at least one failing case (hypothesis stops an operation at its first failure)."""
    known_bugs: dict[str, int] = field(default_factory=dict)
    queued: int = 0

    def count(self, bug: str) -> None:
        self.known_bugs[bug] = self.known_bugs.get(bug, 0) + 1

    def lines(self) -> list[str]:
        known = ", ".join(f"{bug} x{count}" for bug, count in sorted(self.known_bugs.items())) or "none"
        return [
            f"schemathesis: {len(self.operations)} operations, {self.cases} cases, {len(self.failures)} failures",
            f"schemathesis: known app bugs tolerated: {known}; messages queued by fuzzed batches: {self.queued}",
        ]


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counted = Tally()
    yield counted
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(*counted.lines(), sep="\n")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in counted.lines():
            reporter.write_line(line)


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
        known = _known_bug(case.operation, response.status_code)
        if known is None:
            case.validate_response(response, checks=CHECKS, headers=AUTH)
        else:
            bug, broken_check = known
            _assert_error_envelope(response.json())
            case.validate_response(response, checks=[c for c in CHECKS if c is not broken_check], headers=AUTH)
            tally.count(bug)
    except BaseException:  # schemathesis' FailureGroup is a BaseExceptionGroup
        tally.failures.add(case.operation.label)
        raise
    if response.status_code >= 400 and "ok" not in response.json():
        tally.count("BUG-3")
    if case.operation.label == "POST /commands/add-messages" and response.status_code == 200:
        tally.queued += int(response.json()["queued"])


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
