"""Clock contract, run against SystemClock (real time) and FrozenClock (time moves when told).

Each test gets a `ClockDriver`: the clock plus `elapse(seconds)`, which makes that much of the
clock's time pass (really waiting on the system clock, advancing the frozen one), so one test
body states the contract for both. Timeouts are kept tiny so real time costs little.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from adapters.memory.clock import FrozenClock
from adapters.system_clock import SystemClock
from ports.clock import Clock

T0 = 1_800_000_000.0


@dataclass
class ClockDriver:
    clock: Clock
    elapse: Callable[[float], Awaitable[None]]


async def _settle() -> None:
    """Let every ready task run (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


def _system() -> ClockDriver:
    async def elapse(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return ClockDriver(SystemClock(), elapse)


def _frozen() -> ClockDriver:
    clock = FrozenClock(T0)

    async def elapse(seconds: float) -> None:
        await _settle()
        clock.advance(seconds)
        await _settle()

    return ClockDriver(clock, elapse)


@pytest.fixture(params=[_system, _frozen], ids=["system", "frozen"])
def driver(request: pytest.FixtureRequest) -> ClockDriver:
    return request.param()


async def test_now_is_posix_seconds_and_monotone(driver: ClockDriver) -> None:
    readings = [driver.clock.now()]
    for _ in range(5):
        await driver.elapse(0.001)
        readings.append(driver.clock.now())
    assert all(isinstance(r, float) for r in readings)
    assert readings == sorted(readings)
    assert readings[-1] > readings[0]
    assert readings[0] > 1_600_000_000  # POSIX seconds, not a monotonic counter


async def test_wait_returns_true_at_once_when_the_event_is_already_set(driver: ClockDriver) -> None:
    event = asyncio.Event()
    event.set()
    assert await asyncio.wait_for(driver.clock.wait(event, 10.0), 1.0) is True
    assert await asyncio.wait_for(driver.clock.wait(event, None), 1.0) is True
    assert await asyncio.wait_for(driver.clock.wait(event, 0), 1.0) is True


async def test_wait_returns_true_when_the_event_is_set_while_waiting(driver: ClockDriver) -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(driver.clock.wait(event, 10.0))
    await _settle()
    assert not waiter.done()
    event.set()
    assert await asyncio.wait_for(waiter, 1.0) is True


async def test_wait_without_timeout_waits_for_the_event_alone(driver: ClockDriver) -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(driver.clock.wait(event, None))
    await driver.elapse(0.05)
    assert not waiter.done()
    event.set()
    assert await asyncio.wait_for(waiter, 1.0) is True


async def test_wait_returns_false_once_the_timeout_has_passed(driver: ClockDriver) -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(driver.clock.wait(event, 0.05))
    await driver.elapse(0.1)
    assert await asyncio.wait_for(waiter, 1.0) is False


async def test_wait_with_zero_timeout_does_not_block(driver: ClockDriver) -> None:
    assert await asyncio.wait_for(driver.clock.wait(asyncio.Event(), 0), 1.0) is False


async def test_wait_is_cancellable(driver: ClockDriver) -> None:
    waiter = asyncio.create_task(driver.clock.wait(asyncio.Event(), 10.0))
    await _settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


# ------------------------------------------------------------------ FrozenClock specifics


async def test_frozen_wait_times_out_only_once_advanced_past_the_deadline() -> None:
    clock = FrozenClock(T0)
    event = asyncio.Event()
    waiter = asyncio.create_task(clock.wait(event, 10.0))
    await _settle()
    assert not waiter.done()
    clock.advance(5)
    await _settle()
    assert not waiter.done()
    clock.advance(4.9)
    await _settle()
    assert not waiter.done()
    clock.advance(0.1)
    assert await asyncio.wait_for(waiter, 1.0) is False
    assert clock.now() == T0 + 10


async def test_frozen_wait_does_not_time_out_in_real_time() -> None:
    clock = FrozenClock(T0)
    waiter = asyncio.create_task(clock.wait(asyncio.Event(), 0.01))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    clock.set(T0 + 0.01)
    assert await asyncio.wait_for(waiter, 1.0) is False


async def test_frozen_advance_wakes_every_waiter() -> None:
    clock = FrozenClock(T0)
    short = asyncio.create_task(clock.wait(asyncio.Event(), 1.0))
    long = asyncio.create_task(clock.wait(asyncio.Event(), 100.0))
    await _settle()
    clock.advance(50)
    assert await asyncio.wait_for(short, 1.0) is False
    await _settle()
    assert not long.done()
    clock.set(T0 + 100)
    assert await asyncio.wait_for(long, 1.0) is False


async def test_frozen_clock_only_moves_forward() -> None:
    clock = FrozenClock(T0)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(T0 - 1)
    assert clock.now() == T0
    assert clock.advance(1.5) == T0 + 1.5
    assert clock.set(T0 + 2) == T0 + 2
