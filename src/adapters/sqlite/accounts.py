"""SQLite AccountStore and ServiceState."""

from __future__ import annotations

from adapters.secret_box import PlainSecretBox, SecretBox, resealed
from adapters.sql.rows import account_from_row
from adapters.sqlite.database import SqliteDatabase
from core.errors import AccountInUse, AccountNotFound
from core.model import Account
from ports.account_store import AccountStore
from ports.service_state import ServiceState

_COLUMNS = (
    "id, host, port, user, password, use_tls, per_minute, per_hour, per_day, limit_behavior, batch_size,"
    " starttls, allow_insecure_auth, max_connections, ttl_seconds"
)


class SqliteAccountStore(AccountStore):
    """Passwords go through `box`: sealed when written, opened when read."""

    def __init__(self, db: SqliteDatabase, box: SecretBox | None = None) -> None:
        self._db = db
        self._box: SecretBox = box or PlainSecretBox()

    async def seal_stored_passwords(self) -> int:
        """Encrypt passwords stored before a key was configured; check the others open. Returns how many."""
        async with self._db.transaction() as conn:
            async with conn.execute("SELECT id, password FROM accounts WHERE password IS NOT NULL") as cur:
                updates = resealed(self._box, [(row[0], row[1]) for row in await cur.fetchall()])
            await conn.executemany("UPDATE accounts SET password = ? WHERE id = ?", updates)
        return len(updates)

    async def upsert(self, account: Account) -> Account:
        a = account
        async with self._db.transaction() as conn:
            await conn.execute(
                f"INSERT INTO accounts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, port = excluded.port, user = excluded.user,"
                " password = coalesce(excluded.password, accounts.password), use_tls = excluded.use_tls,"
                " per_minute = excluded.per_minute, per_hour = excluded.per_hour, per_day = excluded.per_day,"
                " limit_behavior = excluded.limit_behavior, batch_size = excluded.batch_size,"
                " starttls = excluded.starttls, allow_insecure_auth = excluded.allow_insecure_auth,"
                " max_connections = excluded.max_connections, ttl_seconds = excluded.ttl_seconds",
                (
                    a.id,
                    a.host,
                    a.port,
                    a.user,
                    self._box.seal(a.password) if a.password is not None else None,
                    int(a.use_tls),
                    a.limits.per_minute,
                    a.limits.per_hour,
                    a.limits.per_day,
                    a.limit_behavior.value,
                    a.batch_size,
                    a.starttls.value,
                    int(a.allow_insecure_auth),
                    a.max_connections,
                    a.ttl_seconds,
                ),
            )
            async with conn.execute(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", (a.id,)) as cur:
                row = await cur.fetchone()
        assert row is not None
        return account_from_row(row, self._box, "user")

    async def get(self, account_id: str) -> Account | None:
        async with (
            self._db.read() as conn,
            conn.execute(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", (account_id,)) as cur,
        ):
            row = await cur.fetchone()
        return account_from_row(row, self._box, "user") if row else None

    async def list(self) -> list[Account]:
        async with self._db.read() as conn, conn.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY id") as cur:
            return [account_from_row(row, self._box, "user") for row in await cur.fetchall()]

    async def delete(self, account_id: str, force: bool, now: float) -> int:
        async with self._db.transaction() as conn:
            async with conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)) as cur:
                if await cur.fetchone() is None:
                    raise AccountNotFound(f"no account {account_id!r}")
            async with conn.execute(
                "SELECT count(*) FROM messages WHERE account_id = ? AND status = 'queued'", (account_id,)
            ) as cur:
                unsent = (await cur.fetchone() or (0,))[0]
            if unsent and not force:
                raise AccountInUse(f"account {account_id!r} has {unsent} unsent messages; use force=true to fail them")
            reason = f"account {account_id!r} was deleted"
            idle = "account_id = ? AND status = 'queued' AND (lease_until IS NULL OR lease_until <= ?)"
            await conn.execute(
                "INSERT INTO attempts (message_id, ts, outcome, code, detail)"
                f" SELECT id, ?, 'permanent_failure', NULL, ? FROM messages WHERE {idle}",
                (now, reason, account_id, now),
            )
            cur = await conn.execute(
                "UPDATE messages SET status = 'error', error_ts = ?, finished_ts = ?, error = ?, version = version + 1"
                f" WHERE {idle}",
                (now, now, reason, account_id, now),
            )
            failed = cur.rowcount
            await conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
        return int(failed)


class SqliteServiceState(ServiceState):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def is_active(self) -> bool:
        async with self._db.read() as conn, conn.execute("SELECT value FROM service_state WHERE key = 'active'") as cur:
            row = await cur.fetchone()
        return row is None or row[0] == "1"

    async def set_active(self, active: bool) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO service_state (key, value) VALUES ('active', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                ("1" if active else "0",),
            )
