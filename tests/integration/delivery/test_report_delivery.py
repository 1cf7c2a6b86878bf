"""Delivery reports over real HTTP: the API (test_mode, so run-now waits) posting to a real receiver.

Authentication headers, batching, what a failing, slow or absent receiver does to the `reported`
state, the receiver's summary check, deferred-then-final reports, and retention with reporting off.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from typing import Any

import httpx
import pytest
from delivery_support import T0, PortReceiver, StartApi

from ports.mail_sender import PermanentSendError, TransientSendError


async def _api(
    start_api: StartApi, url: str | None, *, account: dict[str, Any] | None = None, **sections: Any
) -> httpx.AsyncClient:
    sync = {"backend": "httpx", **sections.pop("sync", {})}
    if url is not None:
        sync["proxy_sync_url"] = url
    client = await start_api(sync=sync, **sections)
    response = await client.post("/account", json={"id": "accA", "host": "smtp.invalid", **(account or {})})
    assert response.status_code == 200, response.text
    return client


async def _queue(client: httpx.AsyncClient, *ids: str, **fields: Any) -> None:
    entries = [
        {"id": mid, "account_id": "accA", "from": "app@example.com", "to": ["ann@example.org"], **fields} for mid in ids
    ]
    answer = (await client.post("/commands/add-messages", json={"messages": entries})).json()
    assert answer["rejected"] == [], answer


async def _run(client: httpx.AsyncClient) -> None:
    assert (await client.post("/commands/run-now")).json() == {"ok": True}


async def _status(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/status")).json())


async def _unreported(client: httpx.AsyncClient) -> int:
    return int((await _status(client))["queue"]["unreported"])


def _ids(items: list[dict[str, Any]]) -> Counter[str]:
    return Counter(item["id"] for item in items)


def _clock(client: httpx.AsyncClient) -> Any:
    return client.app.state.container.clock()  # type: ignore[attr-defined]


def _outbox_sender(client: httpx.AsyncClient) -> Any:
    return client.app.state.container.mail_sender()  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ authentication


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (
            {"proxy_sync_user": "app", "proxy_sync_password": "pa:ss w0rd"},
            "Basic " + base64.b64encode(b"app:pa:ss w0rd").decode(),
        ),
        ({"proxy_sync_token": "tok-123"}, "Bearer tok-123"),
        ({"proxy_sync_user": "app", "proxy_sync_password": "pw", "proxy_sync_token": "tok-123"}, "Bearer tok-123"),
        ({}, None),
    ],
    ids=["basic", "bearer", "token-wins-over-basic", "none"],
)
async def test_authorization_header(
    start_api: StartApi, report_receiver, credentials: dict[str, str], expected: str | None
) -> None:
    client = await _api(start_api, report_receiver.url, sync=credentials)
    await _queue(client, "M1", "M2")
    await _run(client)
    assert report_receiver.requests
    for request in report_receiver.requests:
        assert request.method == "POST"
        assert request.headers.get("authorization") == expected
        assert request.headers["content-type"] == "application/json"
    assert _ids(report_receiver.reports) == {"M1": 1, "M2": 1}


# ------------------------------------------------------------------------------------------ batching


async def test_reports_go_out_in_batches_of_batch_size(start_api: StartApi, report_receiver) -> None:
    client = await _api(start_api, report_receiver.url, sync={"batch_size": 10})
    ids = [f"M{i:02d}" for i in range(25)]
    await _queue(client, *ids)
    await _run(client)
    assert [len(r.json()["delivery_report"]) for r in report_receiver.requests] == [10, 10, 5]
    assert _ids(report_receiver.reports) == dict.fromkeys(ids, 1)
    assert report_receiver.reports[0] == {
        "id": "M00",
        "account_id": "accA",
        "priority": 2,
        "sent_ts": int(T0),
        "error_ts": None,
        "error": None,
        "deferred_ts": None,
        "refused_recipients": [],
    }
    assert await _unreported(client) == 0


# ------------------------------------------------------------------------------------------ failing receivers


@pytest.mark.parametrize("status", [500, 503])
async def test_a_failing_receiver_marks_nothing_reported_until_it_answers_2xx(
    start_api: StartApi, report_receiver, status: int
) -> None:
    report_receiver.status = status
    client = await _api(start_api, report_receiver.url)
    await _queue(client, "M1", "M2", "M3")
    await _run(client)
    assert report_receiver.requests and {r.status for r in report_receiver.requests} == {status}
    assert report_receiver.batches == []
    assert await _unreported(client) == 3
    assert (await client.get("/messages/M1")).json()["message"]["reported_ts"] is None

    report_receiver.status = 200
    await _run(client)
    assert _ids(report_receiver.reports) == {"M1": 1, "M2": 1, "M3": 1}
    assert await _unreported(client) == 0
    assert (await client.get("/messages/M1")).json()["message"]["reported_ts"] == T0

    seen = len(report_receiver.requests)
    await _run(client)
    assert len(report_receiver.requests) == seen  # acknowledged rows are never sent again


async def test_a_failure_mid_drain_keeps_the_acknowledged_batches(start_api: StartApi, report_receiver) -> None:
    report_receiver.statuses.append(200)  # the first batch is acknowledged, then the receiver fails
    report_receiver.status = 500
    client = await _api(start_api, report_receiver.url, sync={"batch_size": 2})
    await _queue(client, *(f"M{i}" for i in range(5)))
    await _run(client)
    assert _ids(report_receiver.reports) == {"M0": 1, "M1": 1}
    assert await _unreported(client) == 3

    report_receiver.status = 200
    await _run(client)
    assert _ids(report_receiver.reports) == {f"M{i}": 1 for i in range(5)}
    assert await _unreported(client) == 0


async def test_a_receiver_that_is_down_then_comes_back(start_api: StartApi, closed_port: int) -> None:
    client = await _api(start_api, f"http://127.0.0.1:{closed_port}/delivery-report")
    await _queue(client, "M1", "M2")
    await _run(client)  # connection refused: nothing is lost, nothing is marked
    assert await _unreported(client) == 2
    receiver = PortReceiver(closed_port)
    receiver.start()
    try:
        await _run(client)
        assert _ids(receiver.reports) == {"M1": 1, "M2": 1}
        assert await _unreported(client) == 0
    finally:
        receiver.stop()


async def test_a_receiver_too_slow_to_answer_is_retried(start_api: StartApi, report_receiver) -> None:
    report_receiver.delay = 0.6
    client = await _api(start_api, report_receiver.url, sync={"timeout_seconds": 0.2})
    await _queue(client, "M1", "M2")
    await _run(client)  # the client gives up after 0.2 s: not acknowledged
    assert await _unreported(client) == 2

    report_receiver.delay = 0.0
    await _run(client)
    assert await _unreported(client) == 0
    # at-least-once: the receiver may have processed the timed-out POST too; every id arrived
    assert set(_ids(report_receiver.reports)) == {"M1", "M2"}


# ------------------------------------------------------------------------------------------ the receiver's summary


async def test_a_summary_mismatch_is_logged_but_the_rows_are_reported(
    start_api: StartApi, report_receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client = await _api(start_api, report_receiver.url)
    await _queue(client, "M1", "M2")
    await _run(client)  # the receiver answers the matching summary {"sent": 2, "error": 0, "deferred": 0}
    assert "differs from what was sent" not in caplog.text

    report_receiver.reply = {"sent": 0, "error": 3, "deferred": 0}
    await _queue(client, "M3")
    await _run(client)
    mismatches = [r for r in caplog.records if "differs from what was sent" in r.getMessage()]
    assert len(mismatches) == 1
    assert mismatches[0].levelno == logging.WARNING
    assert "'sent': 1" in mismatches[0].getMessage()
    assert await _unreported(client) == 0
    assert _ids(report_receiver.reports) == {"M1": 1, "M2": 1, "M3": 1}


async def test_a_reply_without_a_summary_is_accepted(
    start_api: StartApi, report_receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    report_receiver.reply = "thanks"  # text/plain
    client = await _api(start_api, report_receiver.url)
    await _queue(client, "M1")
    await _run(client)
    assert await _unreported(client) == 0
    assert "differs" not in caplog.text


# ------------------------------------------------------------------------------------------ deferred, then final


async def test_a_rate_limited_message_is_reported_once_when_sent(start_api: StartApi, report_receiver) -> None:
    """Waiting for a rate-limit slot is no state change: the application hears of M2 when it is sent."""
    client = await _api(start_api, report_receiver.url, account={"limit_per_minute": 1})
    await _queue(client, "M1", "M2")
    await _run(client)
    assert [(r["id"], r["sent_ts"], r["deferred_ts"]) for r in report_receiver.reports] == [("M1", int(T0), None)]
    assert await _unreported(client) == 0

    _clock(client).advance(60)
    await _run(client)
    m2 = [r for r in report_receiver.reports if r["id"] == "M2"]
    assert m2 == [{**m2[0], "sent_ts": int(T0 + 60), "error_ts": None, "error": None, "deferred_ts": None}]
    assert await _unreported(client) == 0


async def test_a_temporary_failure_is_reported_deferred_then_the_final_error(
    start_api: StartApi, report_receiver
) -> None:
    client = await _api(start_api, report_receiver.url)
    sender = _outbox_sender(client)
    sender.fail_next(TransientSendError("greylisted", 451), PermanentSendError("mailbox unavailable", 550))
    await _queue(client, "M1")
    await _run(client)
    [deferred] = report_receiver.reports
    assert deferred["deferred_ts"] > T0
    assert (deferred["sent_ts"], deferred["error_ts"], deferred["error"]) == (None, None, None)

    _clock(client).set(deferred["deferred_ts"] + 1)
    await _run(client)
    first, final = report_receiver.reports
    assert first == deferred
    assert final["error_ts"] == int(deferred["deferred_ts"] + 1)
    assert final["deferred_ts"] is None and final["sent_ts"] is None
    assert "550" in final["error"] and "mailbox unavailable" in final["error"]
    assert await _unreported(client) == 0


# ------------------------------------------------------------------------------------------ reporting off


async def test_without_a_url_reporting_is_off_and_retention_counts_from_the_final_state(
    start_api: StartApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await _api(start_api, None, delivery={"retention_seconds": 3600})
    assert "delivery reporting is off" in caplog.text
    assert (await _status(client))["reporting"] == "off"

    sender = _outbox_sender(client)
    await _queue(client, "OLD")
    await _queue(client, "LATE", deferred_ts=T0 + 1000)
    await _queue(client, "FAILS", deferred_ts=T0 + 1000, priority="high")
    await _queue(client, "WAITING", deferred_ts=T0 + 100_000)
    await _run(client)  # OLD sent at T0
    _clock(client).set(T0 + 1000)
    sender.fail_next(PermanentSendError("mailbox unavailable", 550))
    await _run(client)  # FAILS (high priority, first) ends as an error, LATE is sent, both at T0 + 1000

    async def kept() -> set[str]:
        ids = {"OLD", "LATE", "FAILS", "WAITING"}
        return {mid for mid in ids if (await client.get(f"/messages/{mid}")).status_code == 200}

    assert await kept() == {"OLD", "LATE", "FAILS", "WAITING"}
    assert (await client.get("/messages/FAILS")).json()["message"]["state"] == "error"
    _clock(client).set(T0 + 3600 + 1)
    await _run(client)
    assert await kept() == {"LATE", "FAILS", "WAITING"}  # created at T0 too, but they ended at T0 + 1000
    _clock(client).set(T0 + 1000 + 3600 + 1)
    await _run(client)
    assert await kept() == {"WAITING"}  # never purged while queued
    assert (await _status(client))["queue"]["deferred"] == 1
