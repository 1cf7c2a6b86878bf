"""Dispatch: one tick claims each account's due messages, applies its rate limits, sends, records."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from core.model import Account, AttemptOutcome, Claim, Deferred, Failed, Held, LimitBehavior, Outcome, Sent
from core.policies import rate_limiter, retry
from core.policies.scheduler import batch_size_for
from ports.account_store import AccountStore
from ports.clock import Clock
from ports.dispatch_queue import DispatchQueue
from ports.mail_sender import MailSender, PermanentSendError, TransientSendError, storable
from ports.service_state import ServiceState
from ports.work_locks import WorkLocks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    batch_size_per_account: int = 50
    lease_seconds: float = 300.0
    throttle_seconds: float = 60.0
    retry: retry.RetryPolicy = field(default_factory=retry.RetryPolicy)


@dataclass(frozen=True, slots=True)
class DispatchSummary:
    outcomes: tuple[Outcome, ...] = ()
    suspended: bool = False
    more_work: bool = False
    next_due_at: float | None = None


class DispatchService:
    def __init__(
        self,
        queue: DispatchQueue,
        accounts: AccountStore,
        state: ServiceState,
        sender: MailSender,
        clock: Clock,
        config: DispatchConfig,
        jitter: Callable[[], float] = random.random,
        locks: WorkLocks | None = None,
    ) -> None:
        self._queue = queue
        self._accounts = accounts
        self._state = state
        self._sender = sender
        self._clock = clock
        self._config = config
        self._jitter = jitter
        self._locks = locks
        self._throttled_until: dict[str, float] = {}  # in memory: a restart ends a throttling pause early
        self._stopping = False
        self._slot_free_at: dict[str, float] = {}  # accounts waiting for a rate-limit slot

    def stop_taking(self) -> None:
        """Shutting down: start no new send; claims not yet tried wait for their lease to end."""
        self._stopping = True

    async def tick(self) -> DispatchSummary:
        """Process at most one batch per account. `more_work` says a full batch was taken somewhere."""
        if self._stopping or not await self._state.is_active():
            return DispatchSummary(suspended=True)
        now = self._clock.now()
        accounts = await self._accounts.list()
        results = await asyncio.gather(*(self._account_tick(a, now) for a in accounts), return_exceptions=True)
        per_account: list[tuple[list[Outcome], bool]] = []
        for account, result in zip(accounts, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation and the like go through
                # One account's trouble (a store error) must not stop the others; its leases expire.
                log.error("dispatching account %s failed: %r", account.id, result, exc_info=result)
                continue
            per_account.append(result)
        outcomes = tuple(outcome for batch, _ in per_account for outcome in batch)
        more_work = any(full for _, full in per_account)
        await self._sender.close_idle(self._clock.now(), {account.id for account in accounts})
        next_due = None if more_work else await self._next_wake(self._clock.now())
        return DispatchSummary(outcomes=outcomes, more_work=more_work, next_due_at=next_due)

    async def _next_wake(self, now: float) -> float | None:
        """The earliest of: a deferred message coming due, a lease ending, a rate-limit slot freeing,
        a throttling pause ending."""
        pauses = (*self._slot_free_at.values(), *self._throttled_until.values())
        candidates = [at for at in pauses if at > now]
        due = await self._queue.next_due_at(now)
        if due is not None:
            candidates.append(due)
        return min(candidates, default=None)

    async def _account_tick(self, account: Account, now: float) -> tuple[list[Outcome], bool]:
        if self._throttled_until.get(account.id, 0.0) > now:
            return [], False
        if self._locks is None:
            return await self._locked_account_tick(account, now)
        async with self._locks.hold(f"dispatch:{account.id}") as held:
            if not held:  # another process is dispatching this account right now
                return [], False
            return await self._locked_account_tick(account, now)

    async def _locked_account_tick(self, account: Account, now: float) -> tuple[list[Outcome], bool]:
        size = batch_size_for(account, self._config.batch_size_per_account)
        # plan() of a full batch: the first k entries are the plan for any k claims actually found.
        planned = await self._send_times(account, now, size)
        if account.limit_behavior is LimitBehavior.DEFER and planned[0] > now:
            self._slot_free_at[account.id] = planned[0]  # nothing may go: leave the queue untouched
            return [], False
        claims = await self._queue.claim_due(account.id, now, size, now + self._config.lease_seconds)
        if not claims:
            return [], False
        send_times = planned[: len(claims)]
        can_go = [claim for claim, at in zip(claims, send_times, strict=True) if at <= now]
        writer = OutcomeWriter(self._queue, self._clock)
        held_back = False
        for claim, at in zip(claims, send_times, strict=True):
            if at > now:
                outcome = self._over_limit(account, claim, now, at)
                held_back = held_back or isinstance(outcome, Held)
                writer.buffer(outcome)
        try:
            await self._send_batch(account, can_go, writer)
        finally:
            await writer.close()
        # A batch cut short by the limit is not "more work": the next tick comes when a slot frees.
        return writer.written, len(claims) == size and not held_back

    async def _send_batch(self, account: Account, claims: list[Claim], writer: OutcomeWriter) -> None:
        """Send over up to account.max_connections connections, in claim (priority) order.

        Each outcome is committed as soon as it is known (see OutcomeWriter), so a crash can repeat
        only sends whose 250 arrived during the last commit. Once the server throttles the account,
        the rest of the batch waits without being tried.
        """
        pending = deque(claims)

        async def worker() -> None:
            while pending and not self._stopping:
                claim = pending.popleft()
                paused_until = self._throttled_until.get(account.id, 0.0)
                if paused_until > self._clock.now():
                    writer.buffer(self._held_back(account, claim, paused_until))
                else:
                    writer.buffer(await self._send_one(account, claim))

        workers = min(max(account.max_connections, 1), len(claims))
        await asyncio.gather(*(worker() for _ in range(workers)))

    def _held_back(self, account: Account, claim: Claim, until: float) -> Outcome:
        reason = f"account {account.id} throttled by its server; not tried before the pause ends"
        return Deferred(claim.message.id, account.id, self._clock.now(), until, reason, counts_as_attempt=False)

    async def _send_times(self, account: Account, now: float, wanted: int) -> list[float]:
        horizon = rate_limiter.history_horizon(account.limits, now)
        if horizon is None:
            return [now] * wanted
        history = await self._queue.send_history(account.id, horizon)
        return rate_limiter.plan(history, account.limits, now, wanted)

    def _over_limit(self, account: Account, claim: Claim, now: float, free_at: float) -> Outcome:
        message = claim.message
        if account.limit_behavior is LimitBehavior.REJECT:
            return Failed(
                message.id,
                account.id,
                now,
                "rate limit exceeded for account " + account.id,
                outcome=AttemptOutcome.RATE_LIMITED,
            )
        return Held(message.id, account.id, now, free_at)

    async def _send_one(self, account: Account, claim: Claim) -> Outcome:
        message = claim.message
        try:
            receipt = await self._sender.send(account, message)
        except TransientSendError as exc:
            return self._temporary_failure(account, claim, exc)
        except PermanentSendError as exc:
            return Failed(message.id, account.id, self._clock.now(), str(exc), exc.code)
        except Exception as exc:  # a poison message fails alone instead of stopping the dispatcher
            log.exception("unexpected error sending message %s", message.id)
            reason = storable(f"internal error: {type(exc).__name__}: {exc}")
            return Failed(message.id, account.id, self._clock.now(), reason)
        return Sent(
            message.id, account.id, self._clock.now(), tuple(sorted(receipt.refused)), receipt.code, receipt.detail
        )

    def _temporary_failure(self, account: Account, claim: Claim, exc: TransientSendError) -> Outcome:
        now = self._clock.now()
        if exc.throttled:
            pause = self._config.throttle_seconds
            self._throttled_until[account.id] = max(self._throttled_until.get(account.id, 0.0), now + pause)
            log.warning("account %s throttled by its server (%s); pausing it for %.0fs", account.id, exc, pause)
        attempts = claim.attempts + 1
        first = claim.first_attempt_ts if claim.first_attempt_ts is not None else now
        at = retry.next_attempt_at(self._config.retry, attempts, first, now, self._jitter())
        if at is None:
            reason = retry.give_up_reason(attempts, first, now, str(exc))
            return Failed(claim.message.id, account.id, now, reason, exc.code, AttemptOutcome.TEMPORARY_FAILURE)
        return Deferred(claim.message.id, account.id, now, at, str(exc), exc.code)


class OutcomeWriter:
    """Group commit in the background: outcomes are committed as soon as possible, those that arrive
    while a commit runs go together in the next one, and senders never wait for the disk.

    A commit that fails is retried with backoff, its outcomes kept in order; only after
    MAX_COMMIT_FAILURES in a row does `close()` raise (the messages then stay leased and are sent
    again when the lease ends). `close()` waits until everything buffered is committed.
    """

    MAX_COMMIT_FAILURES = 8

    def __init__(self, queue: DispatchQueue, clock: Clock) -> None:
        self._queue = queue
        self._clock = clock
        self._buffer: list[Outcome] = []
        self._pending = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.written: list[Outcome] = []

    def buffer(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._pending.set()
        if self._task is None or (self._task.done() and not self._closing):
            self._task = asyncio.create_task(self._flush_loop())

    async def close(self) -> None:
        self._closing = True
        self._pending.set()
        if self._task is not None:
            await self._task

    async def _one_by_one(self, outcomes: list[Outcome]) -> list[Outcome]:
        """After a failed group commit: commit each alone, so one unstorable outcome fails alone.
        Returns those that still failed."""
        failed: list[Outcome] = []
        for outcome in outcomes:
            try:
                await self._queue.record_outcomes([outcome])
            except Exception:
                failed.append(outcome)
            else:
                self.written.append(outcome)
        return failed

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._pending.wait()
            self._pending.clear()
            if self._buffer:
                taken, self._buffer = self._buffer, []
                try:
                    await self._queue.record_outcomes(taken)
                except Exception:
                    failures += 1
                    taken = await self._one_by_one(taken) if len(taken) > 1 else taken
                    if not taken:
                        failures = 0
                        continue
                    self._buffer = taken + self._buffer
                    log.exception("committing %d outcomes failed (%d in a row)", len(taken), failures)
                    if failures >= self.MAX_COMMIT_FAILURES:
                        raise
                    self._pending.set()
                    await self._clock.sleep(min(0.05 * 2**failures, 5.0))
                    continue
                failures = 0
                self.written += taken
            if self._closing and not self._buffer:
                return
