"""PostgreSQL AccountStore and ServiceState."""

from __future__ import annotations

from adapters.postgres.database import PostgresDatabase
from adapters.secret_box import PlainSecretBox, SecretBox, resealed
from adapters.sql.rows import account_from_row
from core.errors import AccountInUse, AccountNotFound
from core.model import Account
from ports.account_store import AccountStore
from ports.service_state import ServiceState

_COLUMNS = (
    "id, host, port, username, password, use_tls, per_minute, per_hour, per_day, limit_behavior, batch_size,"
    " starttls, allow_insecure_auth, max_connections, ttl_seconds"
)


class PostgresAccountStore(AccountStore):
    """Passwords go through `box`: sealed when written, opened when read."""

    def __init__(self, db: PostgresDatabase, box: SecretBox | None = None) -> None:
        self._db = db
        self._box: SecretBox = box or PlainSecretBox()

    async def seal_stored_passwords(self) -> int:
        """Encrypt passwords stored before a key was configured; check the others open. Returns how many."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch("SELECT id, password FROM accounts WHERE password IS NOT NULL FOR UPDATE")
            updates = resealed(self._box, [(row["id"], row["password"]) for row in rows])
            if updates:
                await conn.executemany("UPDATE accounts SET password = $1 WHERE id = $2", updates)
        return len(updates)

    async def upsert(self, account: Account) -> Account:
        a = account
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO accounts ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                " $14, $15) ON CONFLICT (id) DO UPDATE SET host = excluded.host, port = excluded.port,"
                " username = excluded.username, password = coalesce(excluded.password, accounts.password),"
                " use_tls = excluded.use_tls, per_minute = excluded.per_minute, per_hour = excluded.per_hour,"
                " per_day = excluded.per_day, limit_behavior = excluded.limit_behavior,"
                " batch_size = excluded.batch_size, starttls = excluded.starttls,"
                " allow_insecure_auth = excluded.allow_insecure_auth, max_connections = excluded.max_connections,"
                f" ttl_seconds = excluded.ttl_seconds RETURNING {_COLUMNS}",
                a.id,
                a.host,
                a.port,
                a.user,
                self._box.seal(a.password) if a.password is not None else None,
                a.use_tls,
                a.limits.per_minute,
                a.limits.per_hour,
                a.limits.per_day,
                a.limit_behavior.value,
                a.batch_size,
                a.starttls.value,
                a.allow_insecure_auth,
                a.max_connections,
                a.ttl_seconds,
            )
        assert row is not None
        return account_from_row(row, self._box, "username")

    async def get(self, account_id: str) -> Account | None:
        row = await self._db.pool.fetchrow(f"SELECT {_COLUMNS} FROM accounts WHERE id = $1", account_id)
        return account_from_row(row, self._box, "username") if row else None

    async def list(self) -> list[Account]:
        rows = await self._db.pool.fetch(f"SELECT {_COLUMNS} FROM accounts ORDER BY id")
        return [account_from_row(row, self._box, "username") for row in rows]

    async def delete(self, account_id: str, force: bool, now: float) -> int:
        async with self._db.transaction() as conn:
            found = await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            if found is None:
                raise AccountNotFound(f"no account {account_id!r}")
            unsent = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE account_id = $1 AND status = 'queued'", account_id
            )
            if unsent and not force:
                raise AccountInUse(f"account {account_id!r} has {unsent} unsent messages; use force=true to fail them")
            reason = f"account {account_id!r} was deleted"
            idle = "account_id = $3 AND status = 'queued' AND (lease_until IS NULL OR lease_until <= $1)"
            await conn.execute(
                "INSERT INTO attempts (message_id, ts, outcome, code, detail)"
                f" SELECT id, $1, 'permanent_failure', NULL, $2 FROM messages WHERE {idle}",
                now,
                reason,
                account_id,
            )
            status = await conn.execute(
                "UPDATE messages SET status = 'error', error_ts = $1, finished_ts = $1, error = $2,"
                f" version = version + 1 WHERE {idle}",
                now,
                reason,
                account_id,
            )
            await conn.execute("DELETE FROM accounts WHERE id = $1", account_id)
        return int(status.rsplit(" ", 1)[-1])


class PostgresServiceState(ServiceState):
    """Shared by every replica: suspend/activate applies to all of them."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def is_active(self) -> bool:
        value = await self._db.pool.fetchval("SELECT value FROM service_state WHERE key = 'active'")
        return value is None or value == "1"

    async def set_active(self, active: bool) -> None:
        await self._db.pool.execute(
            "INSERT INTO service_state (key, value) VALUES ('active', $1)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            "1" if active else "0",
        )
