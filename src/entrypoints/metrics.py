"""Prometheus metrics (the seed's names), in a registry of the app's own."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest

from core.model import AttemptOutcome, Deferred, Failed, Held, Outcome, Sent


class MailMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.sent = Counter(
            "asyncmail_sent", "Messages accepted by the SMTP server.", ["account_id"], registry=self.registry
        )
        self.errors = Counter(
            "asyncmail_errors", "Messages that ended in error.", ["account_id"], registry=self.registry
        )
        self.deferred = Counter(
            "asyncmail_deferred", "Deferrals (retry or rate limit).", ["account_id"], registry=self.registry
        )
        self.rate_limited = Counter(
            "asyncmail_rate_limited",
            "Messages held back (each time) or refused by an account's rate limits.",
            ["account_id"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "asyncmail_pending_messages", "Messages queued and not yet sent or failed.", registry=self.registry
        )
        self.loop_errors = Counter(
            "asyncmail_loop_errors",
            "Unexpected errors in a background loop iteration.",
            ["loop"],
            registry=self.registry,
        )

    def know_accounts(self, account_ids: Iterable[str]) -> None:
        """Create every per-account series at 0 so dashboards see known accounts before their first send."""
        for account_id in account_ids:
            for counter in (self.sent, self.errors, self.deferred, self.rate_limited):
                counter.labels(account_id=account_id)

    def observe(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            account = outcome.account_id
            if isinstance(outcome, Sent):
                self.sent.labels(account_id=account).inc()
            elif isinstance(outcome, Failed):
                self.errors.labels(account_id=account).inc()
            elif isinstance(outcome, Deferred):
                self.deferred.labels(account_id=account).inc()
            if isinstance(outcome, Held) or (
                isinstance(outcome, Failed) and outcome.outcome is AttemptOutcome.RATE_LIMITED
            ):
                self.rate_limited.labels(account_id=account).inc()

    def render(self, pending: int) -> bytes:
        self.pending.set(pending)
        return generate_latest(self.registry)
