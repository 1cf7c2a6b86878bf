"""asyncmail started as a user would: `python -m entrypoints.cli serve`, configured through the environment.

The child runs in the work directory (no config/asyncmail.toml there, so built-in defaults plus the
ASYNCMAIL_* variables below apply) with SQLite in that directory and its API on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from procs import Child, Children, HarnessError, cpu_seconds, free_port, log, peak_rss_mb

ACCOUNT_ID = "bench"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    batch_size_per_account: int = 500
    send_interval_seconds: float = 0.2
    sync_batch_size: int = 500
    sync_interval_seconds: float = 0.2
    storage: str = "sqlite"  # "memory" only to see what the database costs; "postgres" for the replicas scenario
    postgres_dsn: str | None = None  # with storage="postgres": the DSN, its search_path naming the schema
    postgres_pool_size: int | None = None  # None: the service's default

    def environment(self, port: int, db_path: Path, report_url: str) -> dict[str, str]:
        postgres = {"ASYNCMAIL_STORAGE__POSTGRES_DSN": self.postgres_dsn} if self.postgres_dsn else {}
        if self.postgres_pool_size is not None:
            postgres["ASYNCMAIL_STORAGE__POSTGRES_POOL_SIZE"] = str(self.postgres_pool_size)
        return {
            **postgres,
            "ASYNCMAIL_SERVER__HOST": "127.0.0.1",
            "ASYNCMAIL_SERVER__PORT": str(port),
            "ASYNCMAIL_STORAGE__BACKEND": self.storage,
            "ASYNCMAIL_STORAGE__DB_PATH": str(db_path),
            "ASYNCMAIL_DELIVERY__BATCH_SIZE_PER_ACCOUNT": str(self.batch_size_per_account),
            "ASYNCMAIL_DELIVERY__SEND_INTERVAL_SECONDS": str(self.send_interval_seconds),
            "ASYNCMAIL_SYNC__PROXY_SYNC_URL": report_url,
            "ASYNCMAIL_SYNC__BATCH_SIZE": str(self.sync_batch_size),
            "ASYNCMAIL_SYNC__INTERVAL_SECONDS": str(self.sync_interval_seconds),
        }


class Service:
    """One asyncmail server process and an HTTP client for its API. `name` names its log file (and the child)."""

    def __init__(
        self,
        children: Children,
        workdir: Path,
        settings: ServiceSettings,
        report_url: str,
        sink_port: int,
        name: str = "asyncmail",
    ) -> None:
        self._children = children
        self.name = name
        self.workdir = workdir
        self.settings = settings
        self.report_url = report_url
        self.sink_port = sink_port
        self.db_path = workdir / "asyncmail.db"
        self.port = 0
        self.child: Child | None = None
        self.http = httpx.AsyncClient(timeout=60.0)
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.child is None:
            raise HarnessError("asyncmail is not running")
        return self.child.pid

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCMAIL_") and k != "API_TOKEN"}
        return {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            **self.settings.environment(self.port, self.db_path, self.report_url),
        }

    async def start(self, timeout_seconds: float = 60.0) -> float:
        """Start the server and wait until GET /status answers. Returns the seconds that took."""
        self.port = free_port()
        self.starts += 1
        argv = [sys.executable, "-m", "entrypoints.cli", "serve"]
        started = time.monotonic()
        self.child = self._children.start(
            Child(self.name, argv, self.workdir / f"{self.name}-{self.starts}.log", env=self.env(), cwd=self.workdir)
        )
        deadline = started + timeout_seconds
        while time.monotonic() < deadline:
            if not self.child.running:
                raise HarnessError(
                    f"{self.name} exited with status {self.child.popen.returncode} during start-up "
                    f"(log {self.child.log_path}):\n{self.child.log_tail()}"
                )
            try:
                response = await self.http.get(f"{self.base_url}/status", timeout=2.0)
                if response.status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        raise HarnessError(
            f"{self.name} did not answer GET /status within {timeout_seconds:.0f}s (log {self.child.log_path}):\n"
            + self.child.log_tail()
        )

    def stop(self) -> None:
        """Graceful stop (SIGINT, like Ctrl-C): in-flight work finishes and the database is closed."""
        if self.child is None:
            return
        status = self.child.stop(signal.SIGINT, grace_seconds=60.0)
        self._children.forget(self.child)
        log(f"{self.name} (pid {self.child.pid}) stopped with status {status}")
        self.child = None

    def last_sent_ts(self, prefix: str) -> float | None:
        """Latest sent_ts of the messages with ids `prefix-*`, read from the SQLite file (read-only; WAL lets
        it run beside the service). More precise than noticing `sent == N` by polling GET /status."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)) as conn:
            row = conn.execute(
                "SELECT max(sent_ts) FROM messages WHERE id >= ? AND id < ?", (f"{prefix}-", f"{prefix}.")
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.pid) if self.child is not None else None

    def cpu_seconds(self) -> float:
        used = cpu_seconds(self.pid) if self.child is not None else None
        return used if used is not None else float("nan")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call that must succeed; anything else is a harness error naming the call."""
        try:
            response = await self.http.request(method, f"{self.base_url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise HarnessError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise HarnessError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    async def status(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.call("GET", "/status")
        return data

    async def queue(self) -> dict[str, int]:
        counts: dict[str, int] = (await self.status())["queue"]
        return counts

    async def suspend(self) -> None:
        await self.call("POST", "/commands/suspend")

    async def activate(self) -> None:
        await self.call("POST", "/commands/activate")

    async def save_account(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """One account pointing at the sink, without rate limits; returns the account as the service stored it."""
        body = {"id": ACCOUNT_ID, "host": "127.0.0.1", "port": self.sink_port, **(extra or {})}
        account: dict[str, Any] = (await self.call("POST", "/account", json=body))["account"]
        return account

    async def aclose(self) -> None:
        await self.http.aclose()
