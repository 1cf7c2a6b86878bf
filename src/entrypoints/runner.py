"""Background loops: dispatch, reporting, retention.

Each loop waits on the first of its wake event, the stop event or its interval on the Clock.
An iteration that raises is logged, counted and retried after a backoff; a loop task that
dies anyway is restarted by the supervisor. `run_now()` runs one full cycle in the caller.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.services.dispatch import DispatchService
from core.services.reporting import ReportingService
from core.services.retention import RetentionService
from entrypoints.metrics import MailMetrics
from ports.clock import Clock

log = logging.getLogger("asyncmail.runner")

MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class TickResult:
    more_work: bool = False
    next_at: float | None = None
    failed: bool = False


class Loop:
    def __init__(
        self,
        name: str,
        tick: Callable[[], Awaitable[TickResult]],
        interval: float,
        clock: Clock,
        on_error: Callable[[str], None],
    ) -> None:
        self.name = name
        self._tick = tick
        self._interval = interval
        self._clock = clock
        self._on_error = on_error
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        self._failures = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self) -> None:
        while not self._stopping:
            result = await self._guarded_tick()
            if result.more_work and not result.failed:
                await asyncio.sleep(0)  # noqa: TID251 -- a yield, not a wait: let the API run between ticks
                continue
            await self._clock.wait(self._wake, self._timeout(result))
            self._wake.clear()

    async def cycle(self, max_rounds: int = 10_000) -> None:
        """Tick until there is no more work (bounded), holding the loop's lock."""
        for _ in range(max_rounds):
            result = await self._guarded_tick()
            if not result.more_work or result.failed or self._stopping:
                return

    async def _guarded_tick(self) -> TickResult:
        async with self._lock:
            try:
                result = await self._tick()
            except Exception:  # the loop boundary: log, count, back off, keep going
                log.exception("%s loop iteration failed", self.name)
                self._on_error(self.name)
                result = TickResult(failed=True)
        self._failures = self._failures + 1 if result.failed else 0
        return result

    def _timeout(self, result: TickResult) -> float:
        if result.failed:
            return float(min(self._interval * 2 ** min(self._failures, 16), max(MAX_BACKOFF_SECONDS, self._interval)))
        if result.next_at is not None:
            return max(0.0, min(self._interval, result.next_at - self._clock.now()))
        return self._interval


class Runner:
    def __init__(
        self,
        dispatch: DispatchService,
        reporting: ReportingService | None,
        retention: RetentionService,
        clock: Clock,
        metrics: MailMetrics,
        send_interval: float,
        report_interval: float,
        retention_interval: float,
        run_now_waits: bool,
    ) -> None:
        self._dispatch = dispatch
        self._reporting = reporting
        self._retention = retention
        self._metrics = metrics
        self._run_now_waits = run_now_waits
        on_error = self._count_error
        self.dispatch_loop = Loop("dispatch", self._dispatch_tick, send_interval, clock, on_error)
        self.report_loop = Loop("report", self._report_tick, report_interval, clock, on_error) if reporting else None
        self.retention_loop = Loop("retention", self._retention_tick, retention_interval, clock, on_error)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def loops(self) -> list[Loop]:
        return [loop for loop in (self.dispatch_loop, self.report_loop, self.retention_loop) if loop is not None]

    def start(self) -> None:
        for loop in self.loops:
            self._spawn(loop)

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking work; let in-flight iterations finish within the grace period, then cancel."""
        self._dispatch.stop_taking()
        for loop in self.loops:
            loop.stop()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            log.warning("loop %s did not finish within %.1fs; cancelling", task.get_name(), grace_seconds)
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    def wake(self) -> None:
        for loop in self.loops:
            loop.wake()

    def wake_dispatch(self) -> None:
        self.dispatch_loop.wake()

    async def run_now(self) -> None:
        """Wake every loop; where configured (test_mode), run the whole cycle before returning."""
        if not self._run_now_waits:
            self.wake()
            return
        for loop in self.loops:
            await loop.cycle()

    async def run_once(self) -> None:
        """One cycle of every loop, for tests."""
        for loop in self.loops:
            await loop.cycle()

    def _spawn(self, loop: Loop) -> None:
        task = asyncio.create_task(loop.run(), name=f"asyncmail-{loop.name}")
        self._tasks[loop.name] = task
        task.add_done_callback(functools.partial(self._on_done, loop))

    def _on_done(self, loop: Loop, task: asyncio.Task[None]) -> None:
        if loop.stopping or task.cancelled():
            return
        log.critical("%s loop died (%r); restarting it", loop.name, task.exception())
        self._count_error(loop.name)
        self._spawn(loop)

    def _count_error(self, loop_name: str) -> None:
        self._metrics.loop_errors.labels(loop=loop_name).inc()

    async def _dispatch_tick(self) -> TickResult:
        summary = await self._dispatch.tick()
        self._metrics.observe(summary.outcomes)
        if summary.outcomes and self.report_loop is not None:
            self.report_loop.wake()
        return TickResult(more_work=summary.more_work, next_at=summary.next_due_at)

    async def _report_tick(self) -> TickResult:
        assert self._reporting is not None
        summary = await self._reporting.tick()
        return TickResult(more_work=summary.more_work, failed=summary.failed is not None)

    async def _retention_tick(self) -> TickResult:
        summary = await self._retention.tick()
        if summary.orphans_failed and self.report_loop is not None:
            self.report_loop.wake()
        if summary.purged or summary.orphans_failed:
            log.info("retention purged %d rows, failed %d orphaned messages", summary.purged, summary.orphans_failed)
        return TickResult()
