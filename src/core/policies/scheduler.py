"""Which due messages a dispatch tick takes, per account."""

from __future__ import annotations

from core.model import Account


def batch_size_for(account: Account, default_batch_size: int) -> int:
    """The account's own batch size when it has one, the service default otherwise."""
    size = account.batch_size if account.batch_size is not None else default_batch_size
    return max(1, size)
