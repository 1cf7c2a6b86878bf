"""Fill a stopped service's SQLite file with many sent-and-reported messages, fast (sqlite3 executemany).

Rather than re-implementing the payload codec (src/adapters/sql/codec.py) and the column list
(src/adapters/sqlite/schema.py), every inserted row is a copy of a real row that the service itself
sent and reported earlier in the run, with a new id and timestamps spread over the last days (inside
the retention window, so nothing is purged while the benchmark runs). Its attempts row is copied too.
The columns come from the table itself, so a schema change does not break the prefill.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs import HarnessError

# Seconds after the row's base time at which each lifecycle timestamp is set (when the template has it).
TIMESTAMP_OFFSETS = {
    "created_ts": 0.0,
    "available_at": 0.0,
    "first_attempt_ts": 1.0,
    "sent_ts": 1.0,
    "finished_ts": 1.0,
    "reported_ts": 2.0,
}


@dataclass(frozen=True, slots=True)
class PrefillStats:
    rows: int
    seconds: float
    template_id: str
    rows_total: int
    max_seq: int


def _quoted(names: list[str]) -> str:
    return ", ".join('"' + name.replace('"', '""') + '"' for name in names)


def _copies(
    template: dict[str, Any], prefix: str, lo: int, hi: int, start: float, step: float
) -> Iterator[tuple[Any, ...]]:
    columns = list(template)
    base = [template[c] for c in columns]
    id_at = columns.index("id")
    stamps = [(columns.index(c), off) for c, off in TIMESTAMP_OFFSETS.items() if template.get(c) is not None]
    for i in range(lo, hi):
        row = list(base)
        row[id_at] = f"{prefix}-{i:07d}"
        ts = start + i * step
        for at, offset in stamps:
            row[at] = ts + offset
        yield tuple(row)


def _attempt_copies(
    template: dict[str, Any], prefix: str, lo: int, hi: int, start: float, step: float
) -> Iterator[tuple[Any, ...]]:
    columns = list(template)
    base = [template[c] for c in columns]
    id_at, ts_at = columns.index("message_id"), columns.index("ts")
    for i in range(lo, hi):
        row = list(base)
        row[id_at] = f"{prefix}-{i:07d}"
        row[ts_at] = start + i * step + 1.0
        yield tuple(row)


def prefill(
    db_path: Path, rows: int, prefix: str = "pre", span_seconds: float = 4 * 86400.0, chunk: int = 50_000
) -> PrefillStats:
    """Insert `rows` sent+reported messages (and one attempt each). The service must be stopped."""
    started = time.monotonic()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute(
            "SELECT * FROM messages WHERE status = 'sent' AND version = reported_version AND reported_ts IS NOT NULL"
            " ORDER BY seq LIMIT 1"
        ).fetchone()
        if found is None:
            raise HarnessError(f"prefill: {db_path} has no sent and reported message to copy")
        template = {k: found[k] for k in found.keys() if k != "seq"}  # noqa: SIM118 (sqlite3.Row)
        attempt_row = conn.execute("SELECT * FROM attempts WHERE message_id = ? LIMIT 1", (template["id"],)).fetchone()
        attempt = {k: attempt_row[k] for k in attempt_row.keys()} if attempt_row else None  # noqa: SIM118
        # Bulk-load settings for this connection only; the service sets its own (WAL, synchronous=FULL) on open.
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        insert = f"INSERT INTO messages ({_quoted(list(template))}) VALUES ({', '.join('?' * len(template))})"
        insert_attempt = (
            f"INSERT INTO attempts ({_quoted(list(attempt))}) VALUES ({', '.join('?' * len(attempt))})"
            if attempt
            else ""
        )
        start, step = time.time() - span_seconds, span_seconds / max(rows, 1)
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            conn.execute("BEGIN")
            conn.executemany(insert, _copies(template, prefix, lo, hi, start, step))
            if attempt:
                conn.executemany(insert_attempt, _attempt_copies(attempt, prefix, lo, hi, start, step))
            conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
        rows_total, max_seq = conn.execute("SELECT count(*), max(seq) FROM messages").fetchone()
    finally:
        conn.close()
    # synchronous=OFF left gigabytes of dirty pages in the OS cache: flush them now, or the service's first
    # commit (an fsync of this file) would pay for them inside the measurement.
    fd = os.open(db_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return PrefillStats(rows, time.monotonic() - started, str(template["id"]), rows_total, max_seq)


def database_bytes(db_path: Path) -> int:
    """The SQLite file plus its WAL and shared-memory files."""
    suffixes = ("", "-wal", "-shm")
    return sum(p.stat().st_size for p in (Path(f"{db_path}{s}") for s in suffixes) if p.exists())
