"""Scenario `replicas` (opt-in: `--postgres`): asyncmail on PostgreSQL, 1 replica, then 3 sharing one database.

For each replica count the same work: a fresh schema, N replicas started against it (the first one
migrates it), suspended, several accounts pointing at the sink (each account is dispatched by one
replica at a time, so several accounts are what lets replicas work in parallel), N messages posted
(spread over the accounts, the ingest clients spread over the replicas), activated, and timed until
the last sent_ts (completion noticed by polling GET /status on the replicas in turn), then until the
receiver has every report. The replicas are stopped and the schema dropped afterwards; schemas left
by an interrupted run are dropped by `drop_leftover_schemas` (run.py calls it on exit).

Without a reachable PostgreSQL the scenario is skipped and says why (a `skipped` figure), no failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from procs import Children, command_cpu_seconds, cpu_seconds, log, machine_busy_seconds
from results import Figure, Result, latency_figures, rate
from scenarios import Bench, Deadline, cpu_percent, post_batches, wait_until_reported
from service import Service, ServiceSettings
from workload import message, message_ids

DEFAULT_DSN = os.environ.get("ASYNCMAIL_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
JSON = {"content-type": "application/json"}
SENT_METRIC = re.compile(r"^asyncmail_sent_total\{[^}]*\} ([0-9.eE+]+)$", re.MULTILINE)

_created_schemas: dict[str, str] = {}  # schema -> DSN, until dropped: what drop_leftover_schemas cleans up


def dsn_with_schema(dsn: str, schema: str) -> str:
    """asyncpg passes unknown DSN query keys to the server as settings: search_path selects the schema."""
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


async def postgres_problem(dsn: str) -> str | None:
    """None when PostgreSQL answers at `dsn` and runs a query, else why not (the scenario is then skipped)."""
    parts = urlsplit(dsn)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2.0)
    except (OSError, TimeoutError) as exc:
        return f"no PostgreSQL server at {host}:{port} ({type(exc).__name__}: {exc})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    try:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=5.0)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except Exception as exc:  # any reason at all: the scenario is skipped with it, the rest of the run goes on
        return f"PostgreSQL at {host}:{port} did not take the bench's connection ({type(exc).__name__}: {exc})"
    return None


async def _execute(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10.0)
    try:
        await conn.execute("SET lock_timeout = '20s'")  # a drop never hangs on a lock some stray client holds
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_schema(dsn: str) -> str:
    schema = f"asyncmail_bench_{uuid.uuid4().hex[:12]}"
    _created_schemas[schema] = dsn
    await _execute(dsn, f'CREATE SCHEMA "{schema}"')
    return schema


async def drop_schema(dsn: str, schema: str) -> None:
    try:
        await _execute(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except Exception as exc:  # cleanup reports and goes on; the leftover is named so that it can be dropped by hand
        log(f"could not drop schema {schema} ({type(exc).__name__}: {exc}); by hand: DROP SCHEMA {schema} CASCADE")
        return
    _created_schemas.pop(schema, None)
    log(f"dropped schema {schema}")


def drop_leftover_schemas() -> None:
    """Drop schemas an interrupted run left behind (call after the replicas are stopped)."""
    if not _created_schemas:
        return

    async def drop_all() -> None:
        for schema, dsn in list(_created_schemas.items()):
            await drop_schema(dsn, schema)

    try:
        asyncio.run(asyncio.wait_for(drop_all(), timeout=60.0))
    except (Exception, KeyboardInterrupt) as exc:
        log(f"could not drop the schemas {sorted(_created_schemas)}: {type(exc).__name__}: {exc}")


async def fetch_row(dsn: str, query: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10.0)
    try:
        return await conn.fetchrow(query)
    finally:
        await conn.close()


@dataclass(slots=True)
class FleetRun:
    """What one replica count measured."""

    replicas: int
    ingest_seconds: float = float("nan")
    ingest_latencies: list[float] = field(default_factory=list)
    ingest_cpu_seconds: float = float("nan")  # every replica's, summed
    dispatch_seconds: float = float("nan")  # activate -> last sent_ts
    seen_seconds: float = float("nan")  # activate -> GET /status showed every message finished
    end_to_end_seconds: float = float("nan")
    errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # during dispatch, seconds: replicas, postgres, ...
    replica_cpu: list[float] = field(default_factory=list)
    sent_by_replica: list[int | None] = field(default_factory=list)
    startup_seconds: float = float("nan")


class CpuMeter:
    """CPU seconds of the replicas, PostgreSQL, the sink, the harness and the whole machine over a phase."""

    def __init__(self, replicas: Sequence[Service], sink_pid: int) -> None:
        self._replicas = replicas
        self._sink_pid = sink_pid
        self._before = self._read()

    def _read(self) -> dict[str, float]:
        readings = {
            **{f"replica{i}": r.cpu_seconds() for i, r in enumerate(self._replicas)},
            "postgres": command_cpu_seconds("postgres"),
            "sink": cpu_seconds(self._sink_pid),
            "harness": time.process_time(),
            "machine": machine_busy_seconds(),
        }
        return {k: float("nan") if v is None else v for k, v in readings.items()}

    def used(self) -> dict[str, float]:
        after = self._read()
        return {k: after[k] - self._before[k] for k in after}


async def sent_count(replica: Service) -> int | None:
    """The replica's own asyncmail_sent_total, summed over accounts (each replica counts what it sent)."""
    try:
        response = await replica.http.get(f"{replica.base_url}/metrics")
    except Exception:
        return None
    if response.status_code != 200:
        return None
    return round(sum(float(v) for v in SENT_METRIC.findall(response.text)))


async def wait_until_finished(fleet: Sequence[Service], target: int, deadline: Deadline, poll: float) -> dict[str, int]:
    """GET /status on the replicas in turn (the counts are the database's, any replica answers for all)."""
    turn = 0
    while True:
        asked = time.perf_counter()
        queue = await fleet[turn % len(fleet)].queue()
        answer_seconds = time.perf_counter() - asked
        if queue["sent"] + queue["error"] >= target:
            return queue
        deadline.check(f"GET /status shows {queue} while waiting for sent + error = {target}")
        turn += 1
        await asyncio.sleep(max(poll, 5 * answer_seconds))


async def run_fleet(
    bench: Bench, children: Children, workdir: Path, dsn: str, count: int, accounts: Sequence[dict[str, Any]]
) -> FleetRun:
    """`count` replicas on a fresh schema: ingest, dispatch, reports. Replicas stopped, schema dropped after."""
    sizes = bench.sizes
    total, prefix = sizes.replicas_messages, f"replicas{count}"
    run = FleetRun(count)
    schema = await create_schema(dsn)
    fleet_dir = workdir / f"replicas-{count}"
    fleet_dir.mkdir(parents=True, exist_ok=True)
    settings = ServiceSettings(
        batch_size_per_account=bench.service.settings.batch_size_per_account,
        storage="postgres",
        postgres_dsn=dsn_with_schema(dsn, schema),
    )
    replicas = [
        Service(children, fleet_dir, settings, bench.service.report_url, bench.sink.port, name=f"replica{i + 1}")
        for i in range(count)
    ]
    log(f"replicas: {count} replica(s) on schema {schema}")
    try:
        started = time.monotonic()
        await replicas[0].start()  # the first one creates the schema's tables; the others then start together
        await asyncio.gather(*(r.start() for r in replicas[1:]))
        run.startup_seconds = time.monotonic() - started
        first = replicas[0]
        await first.suspend()  # the switch is in the database: every replica is suspended
        for account in accounts:
            await first.call("POST", "/account", json=account)

        ids = message_ids(prefix, total)
        messages = [message(mid, accounts[i % len(accounts)]["id"]) for i, mid in enumerate(ids)]
        step = sizes.ingest_batch
        bodies = [json.dumps({"messages": messages[i : i + step]}).encode() for i in range(0, total, step)]
        del messages
        meter = CpuMeter(replicas, bench.sink.child.pid)
        ingest = await post_batches(
            bench, bodies, total, bench.deadline(f"replicas={count}: ingest"), base_urls=[r.base_url for r in replicas]
        )
        run.ingest_seconds, run.ingest_latencies = ingest.seconds, ingest.latencies
        used = meter.used()
        run.ingest_cpu_seconds = sum(used[f"replica{i}"] for i in range(count))
        log(f"replicas={count}: ingested {total} in {ingest.seconds:.1f}s; activating")

        deadline = bench.deadline(f"replicas={count}: dispatch")
        meter = CpuMeter(replicas, bench.sink.child.pid)
        activated = time.time()
        await first.activate()
        queue = await wait_until_finished(replicas, total, deadline, sizes.status_poll_seconds)
        run.seen_seconds = time.time() - activated
        run.cpu = meter.used()
        run.replica_cpu = [run.cpu[f"replica{i}"] for i in range(count)]
        run.errors = queue["error"]
        row = await fetch_row(settings.postgres_dsn or dsn, "SELECT max(sent_ts) AS last FROM messages")
        last_sent = row["last"] if row is not None else None
        run.dispatch_seconds = float(last_sent) - activated if last_sent is not None else run.seen_seconds
        run.sent_by_replica = list(await asyncio.gather(*(sent_count(r) for r in replicas)))
        log(
            f"replicas={count}: dispatched {total} in {run.dispatch_seconds:.1f}s "
            f"(sent by replica: {run.sent_by_replica}); waiting for the delivery reports"
        )
        stats = await wait_until_reported(bench, f"{prefix}-", total, deadline)
        run.end_to_end_seconds = float(stats["last_new_ts"]) - activated
        return run
    finally:
        for replica in replicas:
            replica.stop()
            await replica.aclose()
        await drop_schema(dsn, schema)


def accounts_for(bench: Bench) -> list[dict[str, Any]]:
    return [
        {
            "id": f"bench-pg-{n + 1}",
            "host": "127.0.0.1",
            "port": bench.sink.port,
            "max_connections": bench.sizes.replicas_max_connections,
        }
        for n in range(bench.sizes.replicas_accounts)
    ]


async def replicas(bench: Bench, children: Children, workdir: Path, dsn: str, counts: Sequence[int]) -> Result:
    """The scenario: one FleetRun per replica count; figures prefixed r1_, r3_, ... and the speed-up."""
    sizes = bench.sizes
    where = urlsplit(dsn)
    params = bench.params(
        postgres=f"{where.hostname}:{where.port or 5432}{where.path}",
        replica_counts=list(counts),
        messages=sizes.replicas_messages,
        accounts=sizes.replicas_accounts,
        max_connections_per_account=sizes.replicas_max_connections,
        batch_size_per_account=bench.service.settings.batch_size_per_account,
        send_interval_seconds=bench.service.settings.send_interval_seconds,
        ingest_clients=sizes.ingest_clients,
        ingest_batch=sizes.ingest_batch,
        measured="dispatch: POST /commands/activate -> last sent_ts (GET /status polled on the replicas in turn)",
        cpu="during dispatch, % of one core; machine = every process, all cores (100 x cores at most)",
    )
    for other in ("storage", "account", "profiled"):  # the other scenarios' (SQLite service, its account, py-spy)
        params.pop(other, None)
    problem = await postgres_problem(dsn)
    if problem is not None:
        log(f"replicas scenario skipped: {problem}")
        print(f"# replicas scenario skipped: {problem}", flush=True)
        return Result("replicas", {"skipped": "no PostgreSQL (reason in params)"}, {"skipped": problem, **params})

    accounts = accounts_for(bench)
    figures: dict[str, Figure] = {}
    headline: list[str] = []
    rates: dict[int, float] = {}
    for count in counts:
        run = await run_fleet(bench, children, workdir, dsn, count, accounts)
        n, total = f"r{count}", sizes.replicas_messages
        rates[count] = rate(total, run.dispatch_seconds)
        busy = run.cpu
        replica_cpu: list[float | None] = [cpu_percent(c, run.seen_seconds) for c in run.replica_cpu]
        figures.update(
            {
                f"{n}_startup_s": round(run.startup_seconds, 2),
                f"{n}_ingest_msgs_per_s": rate(total, run.ingest_seconds),
                **latency_figures(f"{n}_ingest_request", run.ingest_latencies, (50, 99)),
                f"{n}_ingest_server_cpu_pct": cpu_percent(run.ingest_cpu_seconds, run.ingest_seconds),
                f"{n}_dispatch_seconds": round(run.dispatch_seconds, 3),
                f"{n}_dispatch_msgs_per_s": rates[count],
                f"{n}_status_seen_seconds": round(run.seen_seconds, 3),
                f"{n}_replicas_cpu_pct": cpu_percent(sum(run.replica_cpu), run.seen_seconds),
                f"{n}_replica_cpu_pct": replica_cpu,
                f"{n}_sent_by_replica": run.sent_by_replica,
                f"{n}_postgres_cpu_pct": cpu_percent(busy["postgres"], run.seen_seconds),
                f"{n}_sink_cpu_pct": cpu_percent(busy["sink"], run.seen_seconds),
                f"{n}_harness_cpu_pct": cpu_percent(busy["harness"], run.seen_seconds),
                f"{n}_machine_cpu_pct": cpu_percent(busy["machine"], run.seen_seconds),
                f"{n}_replicas_cpu_ms_per_msg": round(1000 * sum(run.replica_cpu) / total, 3),
                f"{n}_end_to_end_msgs_per_s": rate(total, run.end_to_end_seconds),
                f"{n}_errors": run.errors,
            }
        )
        if count == counts[0]:
            headline += [f"{n}_ingest_msgs_per_s", f"{n}_ingest_request_p50_ms", f"{n}_ingest_server_cpu_pct"]
        headline += [
            f"{n}_dispatch_msgs_per_s",
            f"{n}_replica_cpu_pct",
            f"{n}_sent_by_replica",
            f"{n}_postgres_cpu_pct",
            f"{n}_sink_cpu_pct",
            f"{n}_machine_cpu_pct",
            f"{n}_replicas_cpu_ms_per_msg",
        ]
    if len(counts) > 1 and rates[counts[0]]:
        key = f"r{counts[-1]}_vs_r{counts[0]}_dispatch_speedup"
        figures[key] = round(rates[counts[-1]] / rates[counts[0]], 2)
        headline.append(key)
    return Result("replicas", figures, params, headline=headline)
