"""asyncmail benchmark: `python bench/run.py` (full) or `python bench/run.py --smoke` (CI-sized, < 60 s).

Starts an SMTP sink, a delivery-report receiver and asyncmail itself (`python -m entrypoints.cli serve`,
SQLite in a temporary directory, its HTTP API on a free 127.0.0.1 port; with --postgres also replicas on
PostgreSQL, see replicas.py), then prints one JSON line per scenario on stdout followed by a short table.
Progress goes to stderr. Figures are printed, never asserted: the exit status is non-zero only when the
harness itself breaks (a child that does not start, a scenario that times out, an API call that fails),
with the reason on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from procs import Children, HarnessError, log
from pyspy import Profiler
from receiver import start_receiver
from replicas import DEFAULT_DSN, drop_leftover_schemas, replicas
from results import Result, add_ratios, table
from scenarios import FULL, SMOKE, Bench, bulk, immediate_latency, python_limit, scale
from service import Service, ServiceSettings
from sink import start_sink

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = RESULTS_DIR.parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="CI-sized run (a few thousand messages, no scale)")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1M-row scale scenario")
    parser.add_argument("--scale-rows", type=int, help="rows to prefill for the scale scenario (default 1,000,000)")
    parser.add_argument("--messages", type=int, help="messages for ingest/dispatch and the latency backlog")
    parser.add_argument(
        "--sink", choices=("auto", "aiosmtpd"), default="auto", help="auto: Postfix smtp-sink if possible"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="ASYNCMAIL_DELIVERY__BATCH_SIZE_PER_ACCOUNT")
    parser.add_argument(
        "--storage", choices=("sqlite", "memory"), default="sqlite", help="memory: compare without the database"
    )
    parser.add_argument("--max-connections", type=int, help="the bench account's max_connections (default: the API's)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="add the replicas scenario: 1 then 3 replicas on PostgreSQL (skipped, saying why, if unreachable)",
    )
    parser.add_argument(
        "--postgres-dsn",
        default=DEFAULT_DSN,
        help=f"server for --postgres, a schema per run is made there ({DEFAULT_DSN})",
    )
    parser.add_argument(
        "--replicas", type=replica_counts, default=(1, 3), metavar="N,M", help="replica counts for --postgres (1,3)"
    )
    parser.add_argument("--replicas-messages", type=int, help="messages per replica count (20,000; smoke 2,000)")
    parser.add_argument("--replicas-accounts", type=int, help="accounts the replicas share (4, max_connections 4 each)")
    parser.add_argument("--workdir", type=Path, help="where the database and logs go (default: a new temp dir)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the database and logs afterwards")
    parser.add_argument("--results", type=Path, help="also write the JSON lines here (default bench/results/)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the server during ingest and dispatch")
    parser.add_argument(
        "--py-spy-option", action="append", default=[], metavar="OPT", help="extra py-spy record option, e.g. --gil"
    )
    return parser.parse_args(argv)


def replica_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"replica counts must be >= 1: {text!r}")
    return counts


async def run(args: argparse.Namespace, children: Children, workdir: Path, emit: list[Result]) -> None:
    sizes = SMOKE if args.smoke else FULL
    if args.messages:
        sizes = dataclasses.replace(sizes, ingest_messages=args.messages, latency_backlog=args.messages)
    if args.scale_rows is not None:
        sizes = dataclasses.replace(sizes, scale_rows=args.scale_rows)
    if args.replicas_messages:
        sizes = dataclasses.replace(sizes, replicas_messages=args.replicas_messages)
    if args.replicas_accounts:
        sizes = dataclasses.replace(sizes, replicas_accounts=args.replicas_accounts)
    do_scale = not (args.smoke or args.no_scale or args.storage != "sqlite")

    sink = await start_sink(children, workdir, prefer=args.sink)
    log(f"SMTP sink: {sink.kind} on 127.0.0.1:{sink.port} ({sink.note})")
    if sink.kind != "postfix smtp-sink":
        print(f"# SMTP sink: {sink.kind}, not Postfix smtp-sink: {sink.note}", flush=True)
    receiver = await start_receiver(children, workdir)
    settings = ServiceSettings(batch_size_per_account=args.batch_size, storage=args.storage)
    service = Service(children, workdir, settings, receiver.report_url, sink.port)
    profiler = Profiler(children, args.profile, args.py_spy_option) if args.profile else None
    common: dict[str, Any] = {
        "mode": "smoke" if args.smoke else "full",
        "sink": sink.kind,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "storage": args.storage,
        "asyncmail_commit": git_revision(),
        **({"profiled": True} if profiler else {}),
    }
    try:
        startup = await service.start()
        log(f"asyncmail answered GET /status after {startup:.2f}s (pid {service.pid}, {service.base_url})")
        account = await service.save_account(
            {"max_connections": args.max_connections} if args.max_connections else None
        )
        common["account"] = {k: account[k] for k in ("max_connections", "batch_size", "starttls") if k in account}
        bench = Bench(sizes, service, sink, receiver, common, profiler)

        def publish(result: Result) -> None:
            # The machine may be shared (2 cores): the load average tells a noisy figure from a regression.
            result.params["loadavg_1m"] = round(os.getloadavg()[0], 2)
            add_ratios(result, bench.python_limit)
            emit.append(result)
            print(result.json_line(), flush=True)

        publish(await python_limit(bench))
        for result in await bulk(bench):
            publish(result)
        publish(await immediate_latency(bench))
        if do_scale:
            publish(await scale(bench, sizes.scale_rows))
        else:
            reason = "--smoke" if args.smoke else "--no-scale" if args.no_scale else f"--storage {args.storage}"
            log(f"scale scenario skipped ({reason})")
        if args.postgres:
            service.stop()  # idle, but the replicas get the machine to themselves
            publish(await replicas(bench, children, workdir, args.postgres_dsn, args.replicas))
    finally:
        if profiler is not None:
            profiler.stop()
        await receiver.aclose()
        await service.aclose()
        service.stop()


def git_revision() -> str | None:
    """The checked-out commit (with -dirty for local changes), so that runs can be compared over time."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # kill -TERM cleans up like Ctrl-C
    started = time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="asyncmail-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    children = Children()
    results: list[Result] = []
    status, failure = 0, ""
    try:
        asyncio.run(run(args, children, workdir, results))
    except HarnessError as exc:
        status, failure = 1, f"bench: harness error: {exc}"
    except KeyboardInterrupt:
        status, failure = 130, "bench: interrupted"
    except Exception:
        traceback.print_exc()
        status, failure = 1, "bench: harness error: unexpected exception (traceback above)"
    finally:
        children.close_all()
        drop_leftover_schemas()  # only after the replicas are gone: an interrupted replicas scenario
        if args.keep_workdir or status != 0:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if results:
        sink = results[0].params.get("sink")
        print(f"\nasyncmail benchmark ({results[0].params['mode']}, sink: {sink}, {time.monotonic() - started:.1f}s)")
        print(table(results))
        partial = "" if status == 0 else ".partial"
        out = args.results or RESULTS_DIR / f"{results[0].params['mode']}{partial}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(r.json_line() + "\n" for r in results))
        log(f"JSON lines also written to {out}")
    if failure:
        print(failure, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
