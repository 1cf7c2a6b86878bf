"""Runner and Loop on a frozen clock: no real sleeps, time moves only when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from unit_support import T0, World

from adapters.memory.clock import FrozenClock
from adapters.memory.store import InMemoryServiceState
from core.services.dispatch import DispatchConfig, DispatchService
from core.services.reporting import ReportingService
from core.services.retention import RetentionService
from entrypoints.metrics import MailMetrics
from entrypoints.runner import Loop, Runner, TickResult

SEND_INTERVAL = 30.0


class FlakyServiceState(InMemoryServiceState):
    """Raises on the first `failures` reads of the switch, like a store that hiccups."""

    def __init__(self, world: World, failures: int) -> None:
        super().__init__(world.state)
        self.failures = failures

    async def is_active(self) -> bool:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("store hiccup")
        return await super().is_active()


class ClockThatBreaksOnce(FrozenClock):
    """A frozen clock whose first wait raises, killing the loop task that called it."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.broken = True

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        if self.broken:
            self.broken = False
            raise RuntimeError("clock broke")
        return await super().wait(event, timeout)


def build_runner(
    world: World, run_now_waits: bool = True, dispatch: DispatchService | None = None, reporting: bool = True
) -> Runner:
    return Runner(
        dispatch or world.dispatcher(DispatchConfig(batch_size_per_account=2)),
        ReportingService(world.reports, world.sink, world.clock, batch_size=100) if reporting else None,
        RetentionService(world.reports, world.queue, world.clock, retention_seconds=86400.0, reporting_enabled=True),
        world.clock,
        MailMetrics(),
        send_interval=SEND_INTERVAL,
        report_interval=60.0,
        retention_interval=3600.0,
        run_now_waits=run_now_waits,
    )


def sample(runner: Runner, name: str, labels: dict[str, str]) -> float:
    value = runner._metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def loop_errors(runner: Runner, loop: str) -> float:
    return sample(runner, "asyncmail_loop_errors_total", {"loop": loop})


async def settle(condition: Callable[[], bool] = lambda: False, rounds: int = 200) -> bool:
    """Let the event loop run (no time passes on the frozen clock) until `condition` holds or rounds run out."""
    for _ in range(rounds):
        if condition():
            return True
        await asyncio.sleep(0)
    return condition()


def runner_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("asyncmail-")]


@pytest.fixture
async def started() -> AsyncIterator[list[Runner]]:
    """Runners appended here are stopped at the end of the test."""
    runners: list[Runner] = []
    yield runners
    for runner in runners:
        await runner.stop(grace_seconds=1.0)


async def test_run_once_drains_every_loop(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(*(world.message(f"m{i}") for i in range(5)))
    runner = build_runner(world)

    await runner.run_once()

    assert sorted(world.sent_ids()) == ["m0", "m1", "m2", "m3", "m4"]  # three dispatch ticks of at most 2
    assert sorted(r.id for r in world.sink.reports) == ["m0", "m1", "m2", "m3", "m4"]
    assert await world.reports.pending_reports(10) == []
    assert sample(runner, "asyncmail_sent_total", {"account_id": "acc"}) == 5
    assert runner_tasks() == []


async def test_run_once_without_reporting(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    runner = build_runner(world, reporting=False)

    await runner.run_once()

    assert [loop.name for loop in runner.loops] == ["dispatch", "retention"]
    assert world.sent_ids() == ["m1"]
    assert world.sink.batches == []


async def test_run_now_waits_for_the_whole_cycle(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(*(world.message(f"m{i}") for i in range(3)))
    runner = build_runner(world, run_now_waits=True)

    await runner.run_now()

    assert len(world.sender.sent) == 3
    assert len(world.sink.reports) == 3


async def test_run_now_without_waiting_only_wakes_the_loops(world: World, started: list[Runner]) -> None:
    await world.add_account("acc")
    runner = build_runner(world, run_now_waits=False)
    runner.start()
    started.append(runner)
    await settle()  # every loop ran its first tick and now waits on the clock
    await world.enqueue(world.message("m1"))

    await runner.run_now()

    assert world.sender.sent == []  # returned before any loop ran
    assert await settle(lambda: len(world.sink.reports) == 1)
    assert world.sent_ids() == ["m1"]
    assert world.clock.now() == world.t0


async def test_failing_tick_is_counted_and_the_loop_keeps_running(world: World, started: list[Runner]) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    flaky = FlakyServiceState(world, failures=1)
    dispatch = DispatchService(world.queue, world.accounts, flaky, world.sender, world.clock, DispatchConfig())
    runner = build_runner(world, dispatch=dispatch)
    runner.start()
    started.append(runner)

    assert await settle(lambda: loop_errors(runner, "dispatch") == 1)
    assert world.sender.sent == []

    world.clock.advance(2 * SEND_INTERVAL - 1)  # backing off: twice the interval after one failure
    await settle()
    assert world.sender.sent == []

    world.clock.advance(1)
    assert await settle(lambda: world.sent_ids() == ["m1"])
    assert loop_errors(runner, "dispatch") == 1
    assert loop_errors(runner, "report") == 0
    assert all(not task.done() for task in runner_tasks())


async def test_failing_tick_in_run_once_is_counted(world: World) -> None:
    await world.add_account("acc")
    flaky = FlakyServiceState(world, failures=1)
    dispatch = DispatchService(world.queue, world.accounts, flaky, world.sender, world.clock, DispatchConfig())
    runner = build_runner(world, dispatch=dispatch)

    await runner.run_once()
    await world.enqueue(world.message("m1"))
    await runner.run_once()

    assert loop_errors(runner, "dispatch") == 1
    assert world.sent_ids() == ["m1"]


async def test_stop_ends_the_loop_tasks(world: World) -> None:
    await world.add_account("acc")
    runner = build_runner(world)
    runner.start()
    await settle()
    tasks = runner_tasks()
    assert sorted(t.get_name() for t in tasks) == ["asyncmail-dispatch", "asyncmail-report", "asyncmail-retention"]

    await runner.stop(grace_seconds=1.0)

    assert all(t.done() and not t.cancelled() for t in tasks)
    assert runner_tasks() == []
    await world.enqueue(world.message("m1"))
    world.clock.advance(10 * SEND_INTERVAL)
    await settle()
    assert world.sender.sent == []


async def test_dispatch_loop_wakes_when_the_clock_passes_the_interval(world: World, started: list[Runner]) -> None:
    await world.add_account("acc")
    runner = build_runner(world)
    runner.start()
    started.append(runner)
    await settle()
    await world.enqueue(world.message("m1"))  # no wake: only the interval will find it

    world.clock.advance(SEND_INTERVAL - 1)
    await settle()
    assert world.sender.sent == []

    world.clock.advance(1)
    assert await settle(lambda: world.sent_ids() == ["m1"])
    assert await settle(lambda: [r.id for r in world.sink.reports] == ["m1"])  # dispatch wakes reporting


async def test_dispatch_loop_wakes_early_for_a_deferred_message(world: World, started: list[Runner]) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("later", deferred_ts=world.t0 + 10))
    runner = build_runner(world)
    runner.start()
    started.append(runner)
    await settle()

    world.clock.advance(9)
    await settle()
    assert world.sender.sent == []

    world.clock.advance(1)  # well before the 30 s interval
    assert await settle(lambda: world.sent_ids() == ["later"])


async def test_wake_dispatch_runs_a_tick_without_time_passing(world: World, started: list[Runner]) -> None:
    await world.add_account("acc")
    runner = build_runner(world)
    runner.start()
    started.append(runner)
    await settle()
    await world.enqueue(world.message("m1"))

    runner.wake_dispatch()

    assert await settle(lambda: world.sent_ids() == ["m1"])
    assert world.clock.now() == world.t0


async def test_loop_backs_off_exponentially_after_repeated_failures(world: World) -> None:
    calls: list[float] = []
    errors: list[str] = []

    async def tick() -> TickResult:
        calls.append(world.clock.now())
        if len(calls) <= 3:
            raise RuntimeError("still broken")
        return TickResult()

    loop = Loop("test", tick, 10.0, world.clock, errors.append)
    task = asyncio.create_task(loop.run())
    try:
        for _ in range(200):
            await settle(lambda: len(calls) == 4, rounds=20)
            if len(calls) == 4:
                break
            world.clock.advance(1)
        assert [ts - world.t0 for ts in calls] == [0, 20, 60, 140]  # waits of 20, 40, 80 seconds
        assert errors == ["test", "test", "test"]
        assert world.clock.now() == world.t0 + 140
    finally:
        loop.stop()
        await asyncio.wait_for(task, timeout=1.0)


async def test_a_dead_loop_task_is_restarted_and_counted(started: list[Runner]) -> None:
    world = World(clock=ClockThatBreaksOnce(T0))
    await world.add_account("acc")
    runner = build_runner(world)
    runner.start()
    started.append(runner)

    assert await settle(lambda: sum(loop_errors(runner, name) for name in ("dispatch", "report", "retention")) == 1)
    assert await settle(lambda: len(runner_tasks()) == 3 and not any(t.done() for t in runner_tasks()))
    await world.enqueue(world.message("m1"))
    runner.wake_dispatch()
    assert await settle(lambda: world.sent_ids() == ["m1"])
