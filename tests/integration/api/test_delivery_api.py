"""Dispatch, deferral, rate limits, suspend/activate and reporting, driven through the HTTP API."""

from __future__ import annotations

import httpx

FROZEN_START = 1_800_000_000.0  # conftest.FROZEN_START: the frozen clock's start


async def _queue(client: httpx.AsyncClient, *entries: dict) -> None:
    response = await client.post("/commands/add-messages", json={"messages": list(entries)})
    assert response.json()["rejected"] == [], response.text


async def _outbox_ids(client: httpx.AsyncClient) -> list[str]:
    return [m["id"] for m in (await client.get("/test/outbox")).json()["messages"]]


async def test_run_now_sends_records_and_reports_before_returning(api, msg) -> None:
    await _queue(api, msg("M1", cc=["cc@example.org"], bcc=["hidden@example.org"]))
    assert (await api.post("/commands/run-now")).json() == {"ok": True}
    outbox = (await api.get("/test/outbox")).json()["messages"]
    assert [m["id"] for m in outbox] == ["M1"]
    assert outbox[0]["recipients"] == ["rcpt@example.org", "cc@example.org", "hidden@example.org"]
    assert "hidden@example.org" not in outbox[0]["data"]
    record = (await api.get("/messages/M1")).json()
    assert record["message"]["state"] == "sent"
    assert record["message"]["sent_ts"] == FROZEN_START
    assert record["message"]["reported_ts"] == FROZEN_START
    assert [a["outcome"] for a in record["attempts"]] == ["sent"]
    reports = (await api.get("/test/reports")).json()["batches"]
    assert reports == [
        [
            {
                "id": "M1",
                "account_id": "accA",
                "priority": 2,
                "sent_ts": int(FROZEN_START),
                "error_ts": None,
                "error": None,
                "deferred_ts": None,
                "refused_recipients": [],
            }
        ]
    ]


async def test_priority_order_within_a_tick(api, msg) -> None:
    await _queue(api, msg("LOW", priority="low"), msg("MED"), msg("HIGH", priority=1), msg("NOW", priority="immediate"))
    await api.post("/commands/run-now")
    assert await _outbox_ids(api) == ["NOW", "HIGH", "MED", "LOW"]


async def test_deferred_message_waits_for_its_time(api, msg) -> None:
    await _queue(api, msg("LATER", deferred_ts=FROZEN_START + 600), msg("NOW"))
    await api.post("/commands/run-now")
    assert await _outbox_ids(api) == ["NOW"]
    later = (await api.get("/messages/LATER")).json()["message"]
    assert later["state"] == "deferred"
    assert (await api.post("/test/clock", json={"advance": 600})).json()["now"] == FROZEN_START + 600
    await api.post("/commands/run-now")
    assert await _outbox_ids(api) == ["NOW", "LATER"]


async def test_rate_limit_holds_messages_until_their_slot_frees(start_api, msg) -> None:
    client = await start_api()
    await client.post("/account", json={"id": "accA", "host": "smtp.invalid", "limit_per_minute": 2})
    await _queue(client, *(msg(f"M{i}") for i in range(5)))
    await client.post("/commands/run-now")
    assert await _outbox_ids(client) == ["M0", "M1"]
    waiting = (await client.get("/messages", params={"state": "queued"})).json()["messages"]
    assert [(m["id"], m["attempts"]) for m in waiting] == [("M2", 0), ("M3", 0), ("M4", 0)]
    metrics = (await client.get("/metrics")).text
    assert 'asyncmail_rate_limited_total{account_id="accA"} 3.0' in metrics
    assert 'asyncmail_deferred_total{account_id="accA"} 0.0' in metrics
    await client.post("/test/clock", json={"advance": 59})
    await client.post("/commands/run-now")
    assert len(await _outbox_ids(client)) == 2
    await client.post("/test/clock", json={"advance": 1})
    await client.post("/commands/run-now")
    assert len(await _outbox_ids(client)) == 4
    await client.post("/test/clock", json={"advance": 60})
    await client.post("/commands/run-now")
    assert await _outbox_ids(client) == ["M0", "M1", "M2", "M3", "M4"]
    reports = [r for batch in (await client.get("/test/reports")).json()["batches"] for r in batch]
    assert [r["id"] for r in reports] == ["M0", "M1", "M2", "M3", "M4"]  # one report each: when sent
    assert next(r["sent_ts"] for r in reports if r["id"] == "M4") == int(FROZEN_START + 120)


async def test_rate_limit_reject_ends_messages_as_errors(start_api, msg) -> None:
    client = await start_api()
    body = {"id": "accA", "host": "smtp.invalid", "limit_per_hour": 1, "limit_behavior": "reject"}
    await client.post("/account", json=body)
    await _queue(client, msg("M1"), msg("M2"))
    await client.post("/commands/run-now")
    assert await _outbox_ids(client) == ["M1"]
    rejected = (await client.get("/messages/M2")).json()["message"]
    assert rejected["state"] == "error"
    assert "rate limit" in rejected["error"]
    metrics = (await client.get("/metrics")).text
    assert 'asyncmail_errors_total{account_id="accA"} 1.0' in metrics
    assert 'asyncmail_rate_limited_total{account_id="accA"} 1.0' in metrics
    assert 'asyncmail_sent_total{account_id="accA"} 1.0' in metrics


async def test_suspend_stops_sends_and_survives_restart(start_api, msg) -> None:
    client = await start_api()
    await client.post("/account", json={"id": "accA", "host": "smtp.invalid"})
    assert (await client.post("/commands/suspend")).json() == {"ok": True, "active": False}
    await _queue(client, msg("M1"))
    await client.post("/commands/run-now")
    assert await _outbox_ids(client) == []
    restarted = await start_api()
    assert (await restarted.get("/status")).json()["active"] is False
    await restarted.post("/commands/run-now")
    assert await _outbox_ids(restarted) == []
    assert (await restarted.post("/commands/activate")).json() == {"ok": True, "active": True}
    await restarted.post("/commands/run-now")
    assert await _outbox_ids(restarted) == ["M1"]


async def test_status_counts(api, msg) -> None:
    await _queue(api, msg("M1"), msg("M2", deferred_ts=FROZEN_START + 10))
    status = (await api.get("/status")).json()
    assert status["queue"] == {"queued": 2, "deferred": 1, "sent": 0, "error": 0, "unreported": 0}
    assert status["test_mode"] is True
    assert status["reporting"] == "memory"
    await api.post("/commands/run-now")
    status = (await api.get("/status")).json()
    assert status["queue"] == {"queued": 1, "deferred": 1, "sent": 1, "error": 0, "unreported": 0}


async def test_retention_purges_reported_rows_after_the_window(start_api, msg) -> None:
    client = await start_api(delivery={"retention_seconds": 3600})
    await client.post("/account", json={"id": "accA", "host": "smtp.invalid"})
    await _queue(client, msg("M1"))
    await client.post("/commands/run-now")
    await client.post("/test/clock", json={"advance": 3599})
    await client.post("/commands/run-now")
    assert (await client.get("/messages/M1")).status_code == 200
    await client.post("/test/clock", json={"advance": 2})
    await client.post("/commands/run-now")
    assert (await client.get("/messages/M1")).status_code == 404


async def test_immediate_message_wakes_the_dispatcher_without_run_now(start_api, msg) -> None:
    client = await start_api()
    await client.post("/account", json={"id": "accA", "host": "smtp.invalid"})
    await _queue(client, msg("URGENT", priority="immediate"))
    for _ in range(200):
        if await _outbox_ids(client) == ["URGENT"]:
            break
        await client.get("/status")
    assert await _outbox_ids(client) == ["URGENT"]
