"""Which finished rows may be purged."""

from __future__ import annotations


def cutoff(retention_seconds: float, now: float) -> float:
    """Rows reported (or, with reporting off, finished) before this moment are purged."""
    return now - retention_seconds
