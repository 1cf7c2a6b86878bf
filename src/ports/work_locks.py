"""WorkLocks port: exclusive work across processes sharing one database.

`hold(key)` is an async context manager yielding True when this process got the lock (and keeps it
until the block ends) or False when another holder has it; it never waits. With one process
per database (SQLite) it only guards against overlap inside the process; a shared database
(PostgreSQL) makes it cluster-wide, so each account is dispatched by one replica at a time
(its rate limits then hold across replicas) and one replica at a time delivers reports.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class WorkLocks(Protocol):
    def hold(self, key: str) -> AbstractAsyncContextManager[bool]: ...
