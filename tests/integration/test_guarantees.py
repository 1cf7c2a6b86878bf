"""The delivery guarantee, proven with real processes: SIGKILL during dispatch, restarts, rate limits.

The service runs as `python -m entrypoints.cli serve` on a real SQLite file, sending to the
threaded aiosmtpd `smtp_server` and reporting to the threaded `report_receiver` (conftest.py).
Figures are printed (run with -s to see them); what is asserted is the guarantee, never a speed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

MESSAGE_ID = re.compile(rb"^Message-ID: <([^@>]+)@guarantee\.test>", re.MULTILINE)
BATCH_SIZE = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """One asyncmail process; `kill()` is SIGKILL, `stop()` is a graceful SIGTERM."""

    def __init__(self, db: Path, log: Path, extra_env: dict[str, str]) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCMAIL_") and k != "API_TOKEN"}
        env.update(
            {
                "ASYNCMAIL_STORAGE__DB_PATH": str(db),
                "ASYNCMAIL_SERVER__PORT": str(self.port),
                "ASYNCMAIL_DELIVERY__SEND_INTERVAL_SECONDS": "0.2",
                "ASYNCMAIL_DELIVERY__BATCH_SIZE_PER_ACCOUNT": str(BATCH_SIZE),
                "ASYNCMAIL_DELIVERY__LEASE_SECONDS": "2",
                "ASYNCMAIL_SYNC__INTERVAL_SECONDS": "0.2",
                "ASYNCMAIL_SMTP__TIMEOUT_SECONDS": "5",
                "ASYNCMAIL_SMTP__HELO_HOSTNAME": "asyncmail.test",
                **extra_env,
            }
        )
        self._log_path = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"asyncmail exited with {self.process.returncode} during start-up")
            try:
                if self.client.get("/status").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("asyncmail did not answer /status within 30 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close()

    def stop(self) -> bool:
        """SIGTERM; True when the process shut down cleanly (uvicorn re-raises SIGTERM once it is done)."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._close()
        return code in (0, -signal.SIGTERM) and b"Application shutdown complete" in self._log_path.read_bytes()

    def _close(self) -> None:
        self.client.close()
        self._log.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        if service.process.poll() is None:
            service.kill()


def _received_ids(smtp_server: Any) -> Counter[str]:
    found: Counter[str] = Counter()
    for mail in list(smtp_server.messages):
        match = MESSAGE_ID.search(mail.content)
        assert match, mail.content[:300]
        found[match.group(1).decode()] += 1
    return found


def _entry(mid: str) -> dict[str, Any]:
    return {
        "id": mid,
        "account_id": "acc",
        "from": "sender@guarantee.test",
        "to": ["rcpt@guarantee.test"],
        "subject": f"crash test {mid}",
        "body": "x" * 500,
        "message_id": f"<{mid}@guarantee.test>",
    }


def _wait(condition: Any, timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def test_sigkill_during_dispatch_loses_nothing(tmp_path: Path, smtp_server, report_receiver, services) -> None:
    total, kills = 5000, 6
    db, log = tmp_path / "crash.db", tmp_path / "service.log"
    env = {"ASYNCMAIL_SYNC__PROXY_SYNC_URL": report_receiver.url}
    rng = random.Random(20261124)

    service = Service(db, log, env)
    services.append(service)
    assert service.client.post("/commands/suspend").json()["active"] is False
    account = {"id": "acc", "host": smtp_server.host, "port": smtp_server.port, "starttls": "off"}
    assert service.client.post("/account", json=account).status_code == 200
    ids = [f"M{i:05d}" for i in range(total)]
    for start in range(0, total, 500):
        answer = service.client.post(
            "/commands/add-messages", json={"messages": [_entry(m) for m in ids[start : start + 500]]}
        )
        assert answer.json()["queued"] == 500, answer.text
    service.client.post("/commands/activate")

    killed_at: list[int] = []
    # Kill at random points of the dispatch: each time a further random share of the mail has arrived.
    targets = sorted(rng.sample(range(total // 20, total * 9 // 10), kills))
    for target in targets:
        _wait(lambda target=target: len(smtp_server.messages) >= target, 60, f"{target} deliveries", poll=0.002)
        killed_at.append(len(smtp_server.messages))
        service.kill()
        service = Service(db, log, env)
        services.append(service)

    _wait(lambda: set(_received_ids(smtp_server)) >= set(ids), 180, "every message at the SMTP server")
    reported_sent = lambda: {r["id"] for r in report_receiver.reports if r["sent_ts"] is not None}  # noqa: E731
    _wait(lambda: reported_sent() >= set(ids), 120, "a 'sent' report for every message")
    status = service.client.get("/status").json()["queue"]
    assert service.stop()

    received = _received_ids(smtp_server)
    duplicates = sum(received.values()) - len(received)
    lost = total - len(set(received) & set(ids))
    print(
        f"\ncrash test: messages={total} kills={kills} received_before_each_kill={killed_at} "
        f"smtp_deliveries={sum(received.values())} duplicates={duplicates} lost={lost} status={status}"
    )
    assert set(received) == set(ids)
    assert status["sent"] == total and status["queued"] == 0 and status["error"] == 0
    # Only a batch whose SMTP 250s came before its commit can be sent twice: at most one batch per kill.
    assert duplicates <= kills * BATCH_SIZE
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM messages WHERE status != 'sent'").fetchone() == (0,)


def test_rate_limit_holds_across_restart(tmp_path: Path, smtp_server, services) -> None:
    limit = 5
    db, log = tmp_path / "limits.db", tmp_path / "service.log"
    service = Service(db, log, {})
    services.append(service)
    account = {
        "id": "acc",
        "host": smtp_server.host,
        "port": smtp_server.port,
        "starttls": "off",
        "limit_per_minute": limit,
    }
    service.client.post("/account", json=account)
    service.client.post("/commands/add-messages", json={"messages": [_entry(f"R{i}") for i in range(12)]})
    _wait(lambda: len(smtp_server.messages) >= limit, 30, f"{limit} sends")
    service.kill()
    restarted = Service(db, log, {})
    services.append(restarted)
    restarted.client.post("/commands/run-now")
    time.sleep(1.5)  # several dispatch intervals of the restarted process
    assert len(smtp_server.messages) == limit
    deferred = restarted.client.get("/messages", params={"state": "queued"}).json()["messages"]
    assert len(deferred) == 12 - limit
    assert all(m["deferred_ts"] is not None for m in deferred)
    assert restarted.stop()
