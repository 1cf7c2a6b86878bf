"""Several asyncmail processes sharing one PostgreSQL: no message sent twice, limits held together.

Needs PostgreSQL (pg_support: skipped on a machine without it, a failure in CI). Each test gets its
own schema. Figures are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_support
import pytest
from service_process import Service, wait_until

pytestmark = pytest.mark.slow

MESSAGE_ID = re.compile(rb"^Message-ID: <([^@>]+)@replica\.test>", re.MULTILINE)


@pytest.fixture
def pg_env() -> Iterator[dict[str, str]]:
    pg_support.require_postgres()
    schema = pg_support.new_schema_name()
    asyncio.run(pg_support.create_schema(schema))
    yield {
        "ASYNCMAIL_STORAGE__BACKEND": "postgres",
        "ASYNCMAIL_STORAGE__POSTGRES_DSN": pg_support.dsn_with_schema(schema),
        "ASYNCMAIL_STORAGE__POSTGRES_POOL_SIZE": "6",
    }
    asyncio.run(pg_support.drop_schema(schema))


@pytest.fixture
def fleet() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        if service.process.poll() is None:
            service.kill()


def _entry(mid: str, account: str) -> dict[str, Any]:
    return {
        "id": mid,
        "account_id": account,
        "from": f"sender@{account}.test",
        "to": ["rcpt@replica.test"],
        "subject": f"replica {mid}",
        "body": "y" * 300,
        "message_id": f"<{mid}@replica.test>",
    }


def _received(smtp_server: Any) -> tuple[Counter[str], dict[str, list[float]]]:
    ids: Counter[str] = Counter()
    by_account: dict[str, list[float]] = defaultdict(list)
    for mail in list(smtp_server.messages):
        match = MESSAGE_ID.search(mail.content)
        assert match
        ids[match.group(1).decode()] += 1
        by_account[mail.mail_from.split("@")[1].removesuffix(".test")].append(mail.received_at)
    return ids, by_account


def _max_in_window(times: list[float], window: float) -> int:
    ordered, best, start = sorted(times), 0, 0
    for end, ts in enumerate(ordered):
        while ts - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _start(fleet: list[Service], tmp_path: Path, env: dict[str, str], count: int) -> list[Service]:
    started = [Service(tmp_path / "unused.db", tmp_path / f"replica{i}.log", env) for i in range(count)]
    fleet.extend(started)
    return started


def test_three_replicas_send_each_message_once_within_limits(
    tmp_path: Path, pg_env, smtp_server, report_receiver, fleet
) -> None:
    env = {**pg_env, "ASYNCMAIL_SYNC__PROXY_SYNC_URL": report_receiver.url, "ASYNCMAIL_DELIVERY__LEASE_SECONDS": "60"}
    replicas = _start(fleet, tmp_path, env, 3)
    first = replicas[0].client
    assert first.post("/commands/suspend").json()["active"] is False
    assert all(r.client.get("/status").json()["active"] is False for r in replicas)  # shared switch
    bulk, limited, limit = ["acc1", "acc2", "acc3", "acc4"], "accl", 40
    for account in [*bulk, limited]:
        body = {"id": account, "host": smtp_server.host, "port": smtp_server.port, "starttls": "off"}
        if account == limited:
            body["limit_per_minute"] = limit
        assert first.post("/account", json=body).status_code == 200
    entries = [_entry(f"B{i:05d}", bulk[i % 4]) for i in range(5000)] + [
        _entry(f"L{i:03d}", limited) for i in range(120)
    ]
    random.Random(6).shuffle(entries)
    for n, start in enumerate(range(0, len(entries), 500)):  # spread intake over the replicas
        answer = replicas[n % 3].client.post("/commands/add-messages", json={"messages": entries[start : start + 500]})
        assert answer.json()["rejected"] == [], answer.text
    began = time.monotonic()
    replicas[1].client.post("/commands/activate")
    bulk_ids = {e["id"] for e in entries if e["account_id"] != limited}
    wait_until(lambda: bulk_ids <= set(_received(smtp_server)[0]), 120, "every bulk message at the SMTP server")
    elapsed = time.monotonic() - began
    wait_until(lambda: len(_received(smtp_server)[1][limited]) >= limit, 30, "the limited account's first minute")
    sent_reports = lambda: Counter(r["id"] for r in report_receiver.reports if r["sent_ts"] is not None)  # noqa: E731
    wait_until(lambda: set(sent_reports()) >= bulk_ids, 60, "a report for every sent message")
    time.sleep(1.0)  # a few more dispatch and report ticks on every replica
    ids, by_account = _received(smtp_server)
    duplicates = sum(ids.values()) - len(ids)
    worst = _max_in_window(by_account[limited], 60.0)
    reports = sent_reports()
    print(
        f"\nreplicas=3 messages={len(bulk_ids)} (+{len(entries) - len(bulk_ids)} rate-limited) seconds={elapsed:.2f} "
        f"throughput={len(bulk_ids) / elapsed:.0f}/s duplicates={duplicates} limited_sent_in_60s={worst}/{limit} "
        f"reports_more_than_once={sum(1 for c in reports.values() if c > 1)}"
    )
    assert duplicates == 0
    assert worst <= limit
    assert len(by_account[limited]) == limit  # the rest waits for the next window
    assert all(reports[mid] == 1 for mid in bulk_ids)
    status = replicas[2].client.get("/status").json()["queue"]
    assert status["sent"] == len(bulk_ids) + limit
    assert status["queued"] == 120 - limit
    for replica in replicas:
        assert replica.stop()


def test_killing_one_of_two_replicas_loses_nothing(tmp_path: Path, pg_env, smtp_server, report_receiver, fleet) -> None:
    env = {**pg_env, "ASYNCMAIL_SYNC__PROXY_SYNC_URL": report_receiver.url}
    steady, victim = _start(fleet, tmp_path, env, 2)
    steady.client.post("/commands/suspend")
    account = {"id": "acc1", "host": smtp_server.host, "port": smtp_server.port, "starttls": "off"}
    steady.client.post("/account", json=account)
    ids = [f"K{i:05d}" for i in range(3000)]
    for start in range(0, len(ids), 500):
        steady.client.post(
            "/commands/add-messages", json={"messages": [_entry(m, "acc1") for m in ids[start : start + 500]]}
        )
    steady.client.post("/commands/activate")
    rng, kills = random.Random(7), 4
    for target in sorted(rng.sample(range(200, 2600), kills)):
        wait_until(lambda target=target: len(smtp_server.messages) >= target, 60, f"{target} deliveries", poll=0.002)
        victim.kill()
        victim = _start(fleet, tmp_path, env, 1)[0]
    wait_until(lambda: set(ids) <= set(_received(smtp_server)[0]), 120, "every message at the SMTP server")
    sent = lambda: {r["id"] for r in report_receiver.reports if r["sent_ts"] is not None}  # noqa: E731
    wait_until(lambda: sent() >= set(ids), 60, "a report for every message")
    received, _ = _received(smtp_server)
    duplicates = sum(received.values()) - len(received)
    print(f"\npostgres crash test: replicas=2 messages={len(ids)} kills={kills} duplicates={duplicates} lost=0")
    assert set(received) == set(ids)
    assert duplicates <= kills * 50
    assert steady.client.get("/status").json()["queue"]["sent"] == len(ids)
    assert steady.stop() and victim.stop()
