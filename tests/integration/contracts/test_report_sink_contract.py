"""ReportSink contract: RecordingReportSink and HttpxReportSink (against a real local HTTP receiver)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from adapters.http.report_sink import HttpxReportSink
from adapters.memory.report_sink import RecordingReportSink
from core.model import DeliveryReport, ReportAck
from ports.report_sink import ReportDeliveryError, ReportSink

T0 = 1_800_000_000.0


def _sent(mid: str = "m1", ts: float = T0 + 0.75) -> DeliveryReport:
    return DeliveryReport(mid, "accA", 1, sent_ts=ts, error_ts=None, error=None, deferred_ts=None, version=1)


def _error(mid: str = "e1") -> DeliveryReport:
    return DeliveryReport(
        mid, "accB", 3, None, error_ts=T0 + 2.5, error="550 no such user", deferred_ts=None, version=2
    )


def _deferred(mid: str = "d1") -> DeliveryReport:
    return DeliveryReport(mid, "accA", 0, None, None, None, deferred_ts=T0 + 600.999, version=3)


@dataclass
class SinkHarness:
    name: str
    sink: ReportSink
    acknowledged: Callable[[], list[list[str]]]
    """Ids of every batch the receiving side accepted, in order."""
    fail_next: Callable[[], None]
    """Make the next delivery fail on the receiving side."""


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture(params=["recording", "httpx"])
def harness(request: pytest.FixtureRequest) -> SinkHarness:
    if request.param == "recording":
        recording = RecordingReportSink()
        return SinkHarness(
            "recording",
            recording,
            lambda: [[r.id for r in batch] for batch in recording.batches],
            recording.fail_next,
        )
    receiver = request.getfixturevalue("report_receiver")
    client = request.getfixturevalue("http_client")
    return SinkHarness(
        "httpx",
        HttpxReportSink(client, receiver.url),
        lambda: [[item["id"] for item in batch] for batch in receiver.batches],
        lambda: receiver.statuses.append(500),
    )


async def test_deliver_returns_an_ack_once_accepted(harness: SinkHarness) -> None:
    ack = await harness.sink.deliver([_sent("m1"), _error("e1"), _deferred("d1")])
    assert isinstance(ack, ReportAck)
    assert harness.acknowledged() == [["m1", "e1", "d1"]]


async def test_batches_arrive_in_order(harness: SinkHarness) -> None:
    await harness.sink.deliver([_sent("a")])
    await harness.sink.deliver([_sent("b"), _sent("c")])
    assert harness.acknowledged() == [["a"], ["b", "c"]]


async def test_an_outage_raises_report_delivery_error_and_is_recoverable(harness: SinkHarness) -> None:
    harness.fail_next()
    with pytest.raises(ReportDeliveryError):
        await harness.sink.deliver([_sent("m1")])
    assert harness.acknowledged() == []
    await harness.sink.deliver([_sent("m1")])
    assert harness.acknowledged() == [["m1"]]


# ----------------------------------------------------------------------------- httpx only


@pytest.fixture
def http_sink(report_receiver, http_client) -> HttpxReportSink:
    return HttpxReportSink(http_client, report_receiver.url)


async def test_body_is_a_delivery_report_with_whole_second_timestamps(report_receiver, http_sink) -> None:
    await http_sink.deliver([_sent("m1"), _error("e1"), _deferred("d1")])
    [request] = report_receiver.requests
    assert request.method == "POST"
    assert request.path == "/delivery-report"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "delivery_report": [
            {"id": "m1", "account_id": "accA", "priority": 1, "sent_ts": int(T0),
             "error_ts": None, "error": None, "deferred_ts": None, "refused_recipients": []},
            {"id": "e1", "account_id": "accB", "priority": 3, "sent_ts": None,
             "error_ts": int(T0) + 2, "error": "550 no such user", "deferred_ts": None, "refused_recipients": []},
            {"id": "d1", "account_id": "accA", "priority": 0, "sent_ts": None,
             "error_ts": None, "error": None, "deferred_ts": int(T0) + 600, "refused_recipients": []},
        ]
    }  # fmt: skip
    for item in request.json()["delivery_report"]:
        assert "version" not in item
        for key in ("sent_ts", "error_ts", "deferred_ts"):
            assert item[key] is None or type(item[key]) is int


async def test_summary_from_the_receiver_is_parsed(report_receiver, http_sink) -> None:
    report_receiver.reply = {"sent": 12, "error": 1, "deferred": 3, "other": 7}
    ack = await http_sink.deliver([_sent()])
    assert ack == ReportAck({"sent": 12, "error": 1, "deferred": 3})


async def test_partial_summary(report_receiver, http_sink) -> None:
    report_receiver.reply = {"sent": 1, "error": "many"}
    assert await http_sink.deliver([_sent()]) == ReportAck({"sent": 1})


@pytest.mark.parametrize(
    "reply", [{}, {"ok": True}, ["sent", 1], "OK", "not json {"], ids=["empty", "no-keys", "list", "text", "garbage"]
)
async def test_a_reply_without_summary_gives_an_ack_without_summary(report_receiver, http_sink, reply) -> None:
    report_receiver.reply = reply
    assert await http_sink.deliver([_sent()]) == ReportAck(None)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_is_an_acknowledgement(report_receiver, http_sink, status) -> None:
    report_receiver.status = status
    if status == 204:
        report_receiver.reply = ""
    assert isinstance(await http_sink.deliver([_sent()]), ReportAck)
    assert len(report_receiver.batches) == 1


@pytest.mark.parametrize("status", [500, 503, 404, 401, 400, 302])
async def test_a_non_2xx_answer_raises_report_delivery_error(report_receiver, http_sink, status) -> None:
    report_receiver.status = status
    with pytest.raises(ReportDeliveryError) as caught:
        await http_sink.deliver([_sent()])
    assert str(status) in str(caught.value)
    assert len(report_receiver.requests) == 1  # no silent retry inside the sink
    assert report_receiver.batches == []


async def test_receiver_down_raises_report_delivery_error(http_client, closed_port) -> None:
    sink = HttpxReportSink(http_client, f"http://127.0.0.1:{closed_port}/delivery-report")
    with pytest.raises(ReportDeliveryError) as caught:
        await sink.deliver([_sent()])
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


async def test_a_timeout_raises_report_delivery_error(report_receiver) -> None:
    report_receiver.delay = 0.5
    async with httpx.AsyncClient(timeout=0.1) as client:
        with pytest.raises(ReportDeliveryError):
            await HttpxReportSink(client, report_receiver.url).deliver([_sent()])


async def test_the_client_s_headers_are_sent(report_receiver) -> None:
    async with httpx.AsyncClient(timeout=5.0, headers={"Authorization": "Bearer t0ken"}) as client:
        await HttpxReportSink(client, report_receiver.url).deliver([_sent()])
    assert report_receiver.requests[0].headers["authorization"] == "Bearer t0ken"
