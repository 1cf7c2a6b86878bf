"""DispatchQueue port: what the dispatcher claims and records.

A claim is a lease: a claimed message is not handed out again until `lease_until`, and a
message whose lease ran out without an outcome (the process died mid-send) is due again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.model import Claim, Outcome


class DispatchQueue(Protocol):
    async def claim_due(self, account_id: str, now: float, limit: int, lease_until: float) -> list[Claim]:
        """Up to `limit` queued, due, unleased messages of the account, highest priority first."""
        ...

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Commit outcomes in one transaction: state, attempt log, send history, lease release.

        An outcome for a message that is no longer queued (finished, purged) changes nothing and
        logs no attempt, except that a Sent still enters the send history: the mail went out.
        """
        ...

    async def send_history(self, account_id: str, since: float) -> list[float]:
        """Times of the account's successful sends after `since` (for rate limits)."""
        ...

    async def next_due_at(self, now: float) -> float | None:
        """Earliest future deferred_ts or lease expiry among queued messages, or None."""
        ...

    async def orphaned(self, now: float, limit: int) -> list[tuple[str, str]]:
        """(message id, account id) of queued, unleased messages whose account no longer exists."""
        ...
