"""The benchmark scenarios. Each returns a Result (figures + params); none asserts anything about speed.

Every loop is bounded by a count and by a Deadline; a deadline that passes is a HarnessError.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import httpx
from prefill import database_bytes, prefill
from procs import HarnessError, log
from pyspy import Profiler
from receiver import ReceiverClient
from results import Figure, Result, latency_figures, ms, percentile, rate
from service import ACCOUNT_ID, Service
from sink import Sink
from workload import encoded_batches, message, raw_email

JSON = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class Sizes:
    """Scenario sizes; `FULL` and `SMOKE` below, single fields overridable from the command line."""

    python_limit_messages: int
    ingest_messages: int
    latency_samples: int
    latency_backlog: int
    scale_rows: int
    scale_messages: int
    page_requests: int  # per cursor variant
    status_requests: int
    scenario_timeout_seconds: float
    replicas_messages: int  # per replica count, the same total (--postgres only)
    python_limit_connections: int = 4
    ingest_clients: int = 8
    ingest_batch: int = 100
    status_poll_seconds: float = 0.1
    replicas_accounts: int = 4  # each account is dispatched by one replica at a time: several let replicas share
    replicas_max_connections: int = 4


FULL = Sizes(
    python_limit_messages=20_000,
    ingest_messages=50_000,
    latency_samples=50,
    latency_backlog=50_000,
    scale_rows=1_000_000,
    scale_messages=10_000,
    page_requests=20,
    status_requests=20,
    scenario_timeout_seconds=1200.0,
    replicas_messages=20_000,
)
SMOKE = Sizes(
    python_limit_messages=2_000,
    ingest_messages=2_000,
    latency_samples=10,
    latency_backlog=2_000,
    scale_rows=20_000,
    scale_messages=1_000,
    page_requests=5,
    status_requests=5,
    scenario_timeout_seconds=40.0,
    replicas_messages=2_000,
)


class Deadline:
    def __init__(self, what: str, seconds: float) -> None:
        self.what = what
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self, detail: str = "") -> None:
        if time.monotonic() > self.end:
            raise HarnessError(f"{self.what} timed out after {self.seconds:.0f}s" + (f": {detail}" if detail else ""))


@dataclass(slots=True)
class Bench:
    """What every scenario needs: sizes, the running service, the sink, the receiver."""

    sizes: Sizes
    service: Service
    sink: Sink
    receiver: ReceiverClient
    common_params: dict[str, Any]
    profiler: Profiler | None = None
    python_limit: float | None = None
    dispatch_rate: float | None = None
    notes: list[str] = field(default_factory=list)

    def deadline(self, what: str) -> Deadline:
        return Deadline(what, self.sizes.scenario_timeout_seconds)

    def params(self, **specific: Any) -> dict[str, Any]:
        return {**specific, **self.common_params}

    def profile(self, phase: str) -> None:
        if self.profiler is not None:
            self.profiler.start(phase, self.service.pid)

    def end_profile(self) -> None:
        if self.profiler is not None:
            self.profiler.stop()


def cpu_percent(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU use over a phase in percent of one core (200 = both cores of this machine busy)."""
    return round(100 * cpu_seconds / wall_seconds, 1) if wall_seconds > 0 else float("nan")


# --- 1. python_limit ---------------------------------------------------------------------------


async def python_limit(bench: Bench) -> Result:
    """aiosmtplib sending pre-built ~2 KB bytes over N concurrent connections straight to the sink."""
    sizes = bench.sizes
    data = raw_email()
    total, conns = sizes.python_limit_messages, sizes.python_limit_connections
    deadline = bench.deadline("python_limit")

    async def one_connection(count: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=bench.sink.port, start_tls=False, timeout=30)
        await client.connect()
        try:
            for _ in range(count):
                await client.sendmail("sender@bench.example", ["rcpt@bench.example"], data)
                deadline.check()
        finally:
            await client.quit()

    shares = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    started, cpu_before = time.perf_counter(), time.process_time()
    await asyncio.wait_for(asyncio.gather(*(one_connection(n) for n in shares)), sizes.scenario_timeout_seconds)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    bench.python_limit = rate(total, seconds)
    return Result(
        "python_limit",
        {
            "messages": total,
            "seconds": round(seconds, 3),
            "msgs_per_s": bench.python_limit,
            "client_cpu_pct": cpu_percent(cpu, seconds),
            "client_cpu_ms_per_msg": round(1000 * cpu / total, 3),
        },
        bench.params(connections=conns, message_bytes=len(data), client=f"aiosmtplib {aiosmtplib.__version__}"),
        headline=["msgs_per_s", "client_cpu_ms_per_msg"],
    )


# --- 2-4. ingest, dispatch, end_to_end -----------------------------------------------------------


@dataclass(slots=True)
class IngestFigures:
    messages: int
    seconds: float
    latencies: list[float]
    rejected: int
    server_cpu_seconds: float = float("nan")
    client_cpu_seconds: float = float("nan")  # the harness's own CPU: it shares the 2 cores with the server


async def post_batches(
    bench: Bench, bodies: list[bytes], expected: int, deadline: Deadline, base_urls: Sequence[str] = ()
) -> IngestFigures:
    """`ingest_clients` concurrent httpx clients posting the pre-encoded bodies; per-request latencies.

    `base_urls`: the servers to post to, client k to base_urls[k % len] (default: the bench's service)."""
    latencies: list[float] = []
    queued = rejected = 0
    first_reason: str | None = None
    todo = iter(bodies)
    urls = list(base_urls) or [bench.service.base_url]

    async def client_loop(base_url: str) -> None:
        nonlocal queued, rejected, first_reason
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=base_url, timeout=120.0, limits=limits) as client:
            for body in todo:  # the iterator is shared: each body is posted once, by whichever client is free
                deadline.check(f"{queued} of {expected} messages queued")
                started = time.perf_counter()
                response = await client.post("/commands/add-messages", content=body, headers=JSON)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise HarnessError(f"add-messages answered {response.status_code}: {response.text[:300]}")
                answer = response.json()
                queued += answer["queued"]
                rejected += len(answer["rejected"])
                if answer["rejected"] and first_reason is None:
                    first_reason = str(answer["rejected"][0])

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(urls[k % len(urls)]) for k in range(bench.sizes.ingest_clients)))
    seconds = time.perf_counter() - started
    if queued != expected:
        raise HarnessError(f"add-messages queued {queued} of {expected} messages; first rejection: {first_reason}")
    return IngestFigures(queued, seconds, latencies, rejected)


async def wait_until_done(bench: Bench, target_finished: int, deadline: Deadline) -> dict[str, int]:
    """Poll GET /status until sent + error reaches target. The poll interval grows with the answer time
    (at least 5x it), so that polling never takes more than ~1/6 of the service's database time."""
    while True:
        asked = time.perf_counter()
        queue = await bench.service.queue()
        answer_seconds = time.perf_counter() - asked
        if queue["sent"] + queue["error"] >= target_finished:
            return queue
        deadline.check(f"GET /status shows {queue} while waiting for sent + error = {target_finished}")
        await asyncio.sleep(max(bench.sizes.status_poll_seconds, 5 * answer_seconds))


async def wait_until_reported(bench: Bench, prefix: str, count: int, deadline: Deadline) -> dict[str, Any]:
    while True:
        stats = await bench.receiver.stats(prefix)
        if stats["matching"] >= count:
            return stats
        deadline.check(f"the receiver has seen {stats['matching']} of {count} ids {prefix}-*")
        await asyncio.sleep(bench.sizes.status_poll_seconds)


@dataclass(slots=True)
class PipelineFigures:
    ingest: IngestFigures
    dispatch_seconds: float  # activate -> last sent_ts
    seen_seconds: float  # activate -> GET /status showed sent == N
    dispatch_cpu_seconds: float  # server process CPU (all threads) from activate to sent == N seen
    end_to_end_seconds: float
    errors: int
    queue_after: dict[str, int]
    rss_after_ingest_mb: float | None


async def ingest_dispatch_report(bench: Bench, prefix: str, count: int, priority: str | None = None) -> PipelineFigures:
    """Suspend, ingest `count` messages, activate, wait until all are sent, then until all are reported."""
    service, sizes = bench.service, bench.sizes
    await service.suspend()
    before = await service.queue()
    bodies = encoded_batches(prefix, count, sizes.ingest_batch, ACCOUNT_ID, priority)
    bench.profile(f"{prefix}-ingest")
    cpu_before, client_cpu_before = service.cpu_seconds(), time.process_time()
    ingest = await post_batches(bench, bodies, count, bench.deadline(f"ingest of {count} messages"))
    ingest.server_cpu_seconds = service.cpu_seconds() - cpu_before
    ingest.client_cpu_seconds = time.process_time() - client_cpu_before
    bench.end_profile()
    rss_after_ingest = service.peak_rss_mb()
    log(f"{prefix}: ingested {count} in {ingest.seconds:.1f}s; activating")

    deadline = bench.deadline(f"dispatch of {count} messages")
    bench.profile(f"{prefix}-dispatch")
    cpu_before = service.cpu_seconds()
    activated = time.time()
    await service.activate()
    queue = await wait_until_done(bench, before["sent"] + before["error"] + count, deadline)
    seen_seconds = time.time() - activated
    dispatch_cpu = service.cpu_seconds() - cpu_before
    bench.end_profile()
    try:
        last_sent = await asyncio.to_thread(service.last_sent_ts, prefix)
    except sqlite3.Error as exc:
        log(f"could not read the last sent_ts ({exc}); using the time GET /status showed sent == N")
        last_sent = None
    dispatch_seconds = last_sent - activated if last_sent is not None else seen_seconds
    log(f"{prefix}: dispatched {count} in {dispatch_seconds:.1f}s; waiting for the delivery reports")

    stats = await wait_until_reported(bench, prefix, count, deadline)
    return PipelineFigures(
        ingest=ingest,
        dispatch_seconds=dispatch_seconds,
        seen_seconds=seen_seconds,
        dispatch_cpu_seconds=dispatch_cpu,
        end_to_end_seconds=float(stats["last_new_ts"]) - activated,
        errors=queue["error"] - before["error"],
        queue_after=queue,
        rss_after_ingest_mb=rss_after_ingest,
    )


async def bulk(bench: Bench) -> list[Result]:
    """Scenarios 2, 3 and 4 on one batch of messages: ingest (suspended), dispatch, end_to_end."""
    sizes, service = bench.sizes, bench.service
    count = sizes.ingest_messages
    run = await ingest_dispatch_report(bench, "bulk", count)
    bench.dispatch_rate = rate(count, run.dispatch_seconds)
    ingest = Result(
        "ingest",
        {
            "messages": count,
            "seconds": round(run.ingest.seconds, 3),
            "msgs_per_s": rate(count, run.ingest.seconds),
            **latency_figures("request", run.ingest.latencies),
            "requests": len(run.ingest.latencies),
            "server_cpu_pct": cpu_percent(run.ingest.server_cpu_seconds, run.ingest.seconds),
            "client_cpu_pct": cpu_percent(run.ingest.client_cpu_seconds, run.ingest.seconds),
            "server_cpu_ms_per_msg": round(1000 * run.ingest.server_cpu_seconds / count, 3),
            "server_peak_rss_mb": run.rss_after_ingest_mb,
        },
        bench.params(clients=sizes.ingest_clients, batch=sizes.ingest_batch, body_bytes=len(message("x", "y")["body"])),
        headline=[
            "msgs_per_s",
            "request_p50_ms",
            "request_p95_ms",
            "request_p99_ms",
            "server_cpu_pct",
            "server_cpu_ms_per_msg",
            "client_cpu_pct",
        ],
    )
    service_params = {
        "batch_size_per_account": service.settings.batch_size_per_account,
        "send_interval_seconds": service.settings.send_interval_seconds,
        "accounts": 1,
        "rate_limits": None,
    }
    dispatch = Result(
        "dispatch",
        {
            "messages": count,
            "seconds": round(run.dispatch_seconds, 3),
            "msgs_per_s": bench.dispatch_rate,
            "status_seen_seconds": round(run.seen_seconds, 3),
            "server_cpu_pct": cpu_percent(run.dispatch_cpu_seconds, run.seen_seconds),
            "server_cpu_ms_per_msg": round(1000 * run.dispatch_cpu_seconds / count, 3),
            "errors": run.errors,
            "server_peak_rss_mb": service.peak_rss_mb(),
        },
        bench.params(
            **service_params, measured="POST /commands/activate -> last sent_ts (GET /status polled until sent == N)"
        ),
        headline=["msgs_per_s", "server_cpu_pct", "server_cpu_ms_per_msg"],
    )
    end_to_end = Result(
        "end_to_end",
        {
            "messages": count,
            "seconds": round(run.end_to_end_seconds, 3),
            "msgs_per_s": rate(count, run.end_to_end_seconds),
        },
        bench.params(
            **service_params,
            sync_batch_size=service.settings.sync_batch_size,
            sync_interval_seconds=service.settings.sync_interval_seconds,
            measured="POST /commands/activate -> receiver has seen every id",
        ),
        headline=["msgs_per_s"],
    )
    return [ingest, dispatch, end_to_end]


# --- 5. immediate_latency -------------------------------------------------------------------------


async def post_immediate(bench: Bench, message_id: str) -> float:
    """POST one immediate message; returns time.time() when the answer arrived."""
    body = {"messages": [message(message_id, ACCOUNT_ID, "immediate")]}
    answer = await bench.service.call("POST", "/commands/add-messages", json=body)
    answered = time.time()
    if answer["queued"] != 1:
        raise HarnessError(f"immediate message {message_id} was not queued: {answer}")
    return answered


async def sent_ts(bench: Bench, message_id: str, deadline: Deadline, poll_seconds: float = 0.005) -> float:
    """Poll GET /messages/{id} until its state is sent; returns its sent_ts."""
    while True:
        found = (await bench.service.call("GET", f"/messages/{message_id}"))["message"]
        if found["state"] == "sent":
            return float(found["sent_ts"])
        if found["state"] == "error":
            raise HarnessError(f"immediate message {message_id} ended in error: {found.get('error')}")
        deadline.check(f"message {message_id} still {found['state']}")
        await asyncio.sleep(poll_seconds)


async def immediate_latency(bench: Bench) -> Result:
    """add-messages answer -> sent_ts of single immediate messages, idle and behind a low-priority backlog."""
    sizes, service = bench.sizes, bench.service
    samples, backlog = sizes.latency_samples, sizes.latency_backlog

    deadline = bench.deadline("immediate_latency (idle)")
    idle: list[float] = []
    for i in range(samples):
        mid = f"idle-{i:05d}"
        answered = await post_immediate(bench, mid)
        idle.append(await sent_ts(bench, mid, deadline) - answered)

    # Under load: a backlog of low-priority messages is being sent while immediates are posted at a steady
    # pace, spread over the expected drain time (from the dispatch scenario's rate), then collected.
    deadline = bench.deadline("immediate_latency (under load)")
    await service.suspend()
    before = await service.queue()
    bodies = encoded_batches("backlog", backlog, sizes.ingest_batch, ACCOUNT_ID, "low")
    await post_batches(bench, bodies, backlog, deadline)
    expected_drain = backlog / bench.dispatch_rate if bench.dispatch_rate else 10.0
    spacing = min(2.0, max(0.02, 0.6 * expected_drain / samples))
    backlog_done_at = before["sent"] + before["error"] + backlog
    posted: list[tuple[str, float]] = []
    await service.activate()
    drained = False
    last_check = 0.0
    while len(posted) < samples and not drained:
        deadline.check(f"{len(posted)} immediates posted")
        mid = f"load-{len(posted):05d}"
        posted.append((mid, await post_immediate(bench, mid)))
        await asyncio.sleep(spacing)
        if time.monotonic() - last_check > max(0.25, spacing):
            last_check = time.monotonic()
            queue = await service.queue()
            drained = queue["sent"] + queue["error"] >= backlog_done_at + len(posted)
    loaded = [await sent_ts(bench, mid, deadline) - answered for mid, answered in posted]
    await wait_until_done(bench, backlog_done_at + len(posted), deadline)

    return Result(
        "immediate_latency",
        {
            "idle_samples": len(idle),
            **latency_figures("idle", idle, (50, 99)),
            "load_samples": len(loaded),
            **latency_figures("load", loaded, (50, 99)),
            "load_max_ms": ms(max(loaded, default=None)),
            "load_samples_ms": [ms(x) for x in loaded],  # in posting order: shows when in the drain a spike hit
        },
        bench.params(
            backlog=backlog,
            backlog_priority="low",
            spacing_seconds=round(spacing, 3),
            batch_size_per_account=service.settings.batch_size_per_account,
            measured="sent_ts - time.time() when the add-messages answer arrived",
        ),
        headline=["idle_p50_ms", "idle_p99_ms", "load_p50_ms", "load_p99_ms", "load_samples"],
    )


# --- 6. scale ---------------------------------------------------------------------------------------


async def timed_gets(bench: Bench, path: str, params: dict[str, str], count: int) -> list[float] | None:
    """`count` sequential GETs; None when the first one is refused (e.g. a cursor format the API no longer takes)."""
    latencies: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        response = await bench.service.http.get(f"{bench.service.base_url}{path}", params=params)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            if not latencies[:-1]:
                return None
            raise HarnessError(f"GET {path} {params} answered {response.status_code}: {response.text[:300]}")
    return latencies


async def scale(bench: Bench, rows: int) -> Result:
    """Prefill `rows` sent+reported rows into the stopped service's database, restart, measure again."""
    sizes, service = bench.sizes, bench.service
    deadline = bench.deadline("scale: reporting before the prefill")
    while (await service.queue())["unreported"]:
        deadline.check("rows still unreported")
        await asyncio.sleep(0.2)
    service.stop()
    log(f"scale: inserting {rows:,} sent+reported rows into {service.db_path}")
    filled = await asyncio.to_thread(prefill, service.db_path, rows)
    size_after_prefill = database_bytes(service.db_path)
    log(f"scale: prefill took {filled.seconds:.1f}s ({filled.rows_total:,} rows, {size_after_prefill / 1e6:,.0f} MB)")
    startup = await service.start()
    log(f"scale: service answered after {startup:.2f}s")

    run = await ingest_dispatch_report(bench, "scale", sizes.scale_messages)

    max_seq = filled.max_seq + sizes.scale_messages
    variants: dict[str, dict[str, str]] = {
        "first": {"limit": "100"},
        "cursor_25pct": {"limit": "100", "cursor": str(max_seq // 4)},
        "cursor_50pct": {"limit": "100", "cursor": str(max_seq // 2)},
        "cursor_90pct": {"limit": "100", "cursor": str(max_seq * 9 // 10)},
        "cursor_end": {"limit": "100", "cursor": str(max_seq - 50)},
        "state_sent_50pct": {"limit": "100", "state": "sent", "cursor": str(max_seq // 2)},
        "state_queued": {"limit": "100", "state": "queued"},
        "account_50pct": {"limit": "100", "account_id": ACCOUNT_ID, "cursor": str(max_seq // 2)},
    }
    pages: list[float] = []
    page_figures: dict[str, Figure] = {}
    skipped: list[str] = []
    for name, params in variants.items():
        latencies = await timed_gets(bench, "/messages", params, sizes.page_requests)
        if latencies is None:
            skipped.append(name)
            continue
        pages += latencies
        page_figures[f"page_{name}_p50_ms"] = ms(percentile(latencies, 50))
    status = await timed_gets(bench, "/status", {}, sizes.status_requests) or []
    rows_total = filled.rows_total + sizes.scale_messages
    db_bytes = database_bytes(service.db_path)
    return Result(
        "scale",
        {
            "prefill_rows": rows,
            "prefill_seconds": round(filled.seconds, 1),
            "rows_total": rows_total,
            "startup_s": round(startup, 2),
            "ingest_msgs_per_s": rate(sizes.scale_messages, run.ingest.seconds),
            **latency_figures("ingest_request", run.ingest.latencies, (50, 99)),
            "dispatch_msgs_per_s": rate(sizes.scale_messages, run.dispatch_seconds),
            "dispatch_server_cpu_pct": cpu_percent(run.dispatch_cpu_seconds, run.seen_seconds),
            "end_to_end_msgs_per_s": rate(sizes.scale_messages, run.end_to_end_seconds),
            **latency_figures("page", pages, (50, 99)),
            **page_figures,
            **latency_figures("status", status, (50, 99)),
            "server_peak_rss_mb": service.peak_rss_mb(),
            "db_mb": round(db_bytes / 1e6, 1),
            "db_mb_per_million_rows": round(db_bytes / 1e6 / rows_total * 1e6, 1),
            "db_mb_per_million_rows_after_prefill": round(size_after_prefill / 1e6 / filled.rows_total * 1e6, 1),
        },
        bench.params(
            messages=sizes.scale_messages,
            page_requests_per_variant=sizes.page_requests,
            page_variants=list(page_figures),
            skipped_page_variants=skipped,
            prefill="copies of a real sent+reported row (sqlite3 executemany, service stopped)",
        ),
        headline=[
            "prefill_rows",
            "startup_s",
            "ingest_msgs_per_s",
            "dispatch_msgs_per_s",
            "page_p50_ms",
            "page_p99_ms",
            "status_p50_ms",
            "status_p99_ms",
            "server_peak_rss_mb",
            "db_mb_per_million_rows",
        ],
    )
