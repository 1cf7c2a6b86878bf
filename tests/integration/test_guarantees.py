"""The delivery guarantee, proven with real processes: SIGKILL during dispatch, restarts, rate limits.

The service runs as `python -m entrypoints.cli serve` on a real SQLite file, sending to the
threaded aiosmtpd `smtp_server` and reporting to the threaded `report_receiver` (conftest.py).
Figures are printed (run with -s to see them); what is asserted is the guarantee, never a speed.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_process import BATCH_SIZE, Service, wait_until

pytestmark = pytest.mark.slow

MESSAGE_ID = re.compile(rb"^Message-ID: <([^@>]+)@guarantee\.test>", re.MULTILINE)


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
        wait_until(lambda target=target: len(smtp_server.messages) >= target, 60, f"{target} deliveries", poll=0.002)
        killed_at.append(len(smtp_server.messages))
        service.kill()
        service = Service(db, log, env)
        services.append(service)

    wait_until(lambda: set(_received_ids(smtp_server)) >= set(ids), 180, "every message at the SMTP server")
    reported_sent = lambda: {r["id"] for r in report_receiver.reports if r["sent_ts"] is not None}  # noqa: E731
    wait_until(lambda: reported_sent() >= set(ids), 120, "a 'sent' report for every message")
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
    wait_until(lambda: len(smtp_server.messages) >= limit, 30, f"{limit} sends")
    service.kill()
    restarted = Service(db, log, {})
    services.append(restarted)
    restarted.client.post("/commands/run-now")
    time.sleep(1.5)  # several dispatch intervals of the restarted process
    assert len(smtp_server.messages) == limit
    waiting = restarted.client.get("/messages", params={"state": "queued"}).json()["messages"]
    assert len(waiting) == 12 - limit
    assert all(m["attempts"] == 0 for m in waiting)
    assert restarted.stop()


def test_long_run_in_one_process_keeps_flowing(tmp_path: Path, smtp_server, report_receiver, services) -> None:
    """5,000 sends in one process: none stalls (a peer stops after 1,000), every one is reported.

    The halves' rates are printed for the record, not asserted: speed is the benchmark's business.
    """
    total = 5000
    env = {"ASYNCMAIL_SYNC__PROXY_SYNC_URL": report_receiver.url, "ASYNCMAIL_DELIVERY__LEASE_SECONDS": "60"}
    service = Service(tmp_path / "long.db", tmp_path / "service.log", env)
    services.append(service)
    service.client.post("/account", json={"id": "acc", "host": smtp_server.host, "port": smtp_server.port})
    ids = [f"L{i:05d}" for i in range(total)]
    for start in range(0, total, 500):
        service.client.post("/commands/add-messages", json={"messages": [_entry(m) for m in ids[start : start + 500]]})
    wait_until(lambda: len(smtp_server.messages) >= total, 180, f"{total} deliveries")
    sent = lambda: {r["id"] for r in report_receiver.reports if r["sent_ts"] is not None}  # noqa: E731
    wait_until(lambda: sent() >= set(ids), 60, "every report")
    times = sorted(mail.received_at for mail in smtp_server.messages)
    half = total // 2
    first, second = half / (times[half - 1] - times[0]), half / (times[-1] - times[half])
    print(f"\nlong run: {total} sends in one process; first half {first:.0f}/s, second half {second:.0f}/s")
    assert set(_received_ids(smtp_server)) == set(ids)
    assert service.stop()
