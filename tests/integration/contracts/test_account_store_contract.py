"""AccountStore and ServiceState contracts, plus persistence across a restart and the SQLite schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.sqlite.accounts import SqliteAccountStore
from adapters.sqlite.database import SqliteDatabase
from adapters.sqlite.messages import SqliteMessageStore
from adapters.sqlite.schema import MIGRATIONS
from core.errors import AccountInUse, AccountNotFound
from core.model import Account, AttemptOutcome, Failed, LimitBehavior, MessageStatus, RateLimits, Sent, StartTls

T0 = 1_800_000_000.0


async def test_upsert_creates_and_returns_what_is_stored(storage, make_account) -> None:
    account = make_account(
        "acc",
        host="smtp.example.net",
        port=465,
        user="mailer",
        password="s3cret",
        use_tls=True,
        limits=RateLimits(per_minute=10, per_hour=100, per_day=1000),
        limit_behavior=LimitBehavior.REJECT,
        batch_size=25,
        starttls=StartTls.REQUIRED,
        allow_insecure_auth=True,
        max_connections=7,
        ttl_seconds=42.5,
    )
    assert await storage.accounts.upsert(account) == account
    assert await storage.accounts.get("acc") == account


async def test_upsert_with_defaults_round_trips(storage, make_account) -> None:
    account = make_account("plain")
    assert await storage.accounts.upsert(account) == account
    assert await storage.accounts.get("plain") == account


async def test_upsert_updates_every_field(storage, make_account) -> None:
    await storage.accounts.upsert(make_account("acc", user="old", password="old-pw", limits=RateLimits(per_minute=1)))
    updated = make_account(
        "acc",
        host="smtp2.example.com",
        port=2525,
        user="new",
        password="new-pw",
        limits=RateLimits(per_hour=50),
        limit_behavior=LimitBehavior.REJECT,
        batch_size=5,
        starttls=StartTls.OFF,
        max_connections=1,
        ttl_seconds=10.0,
    )
    assert await storage.accounts.upsert(updated) == updated
    assert await storage.accounts.get("acc") == updated
    assert len(await storage.accounts.list()) == 1


async def test_update_with_password_none_keeps_the_stored_password(storage, make_account) -> None:
    await storage.accounts.upsert(make_account("acc", user="u", password="keep-me"))
    stored = await storage.accounts.upsert(make_account("acc", host="other.example.com", user="u", password=None))
    assert stored.password == "keep-me"
    assert stored.host == "other.example.com"
    fetched = await storage.accounts.get("acc")
    assert fetched is not None
    assert (fetched.password, fetched.host) == ("keep-me", "other.example.com")


async def test_create_with_password_none_stores_none(storage, make_account) -> None:
    stored = await storage.accounts.upsert(make_account("acc", password=None))
    assert stored.password is None


async def test_get_unknown_returns_none(storage) -> None:
    assert await storage.accounts.get("nope") is None


async def test_list_is_sorted_by_id(storage, make_account) -> None:
    assert await storage.accounts.list() == []
    for account_id in ["m", "B", "a", "z", "b"]:
        await storage.accounts.upsert(make_account(account_id))
    assert [a.id for a in await storage.accounts.list()] == sorted(["m", "B", "a", "z", "b"])


async def test_delete_unknown_raises_account_not_found(storage) -> None:
    with pytest.raises(AccountNotFound):
        await storage.accounts.delete("nope", force=False, now=T0)
    with pytest.raises(AccountNotFound):
        await storage.accounts.delete("nope", force=True, now=T0)


async def test_delete_without_messages(storage, make_account) -> None:
    await storage.accounts.upsert(make_account("acc"))
    await storage.accounts.upsert(make_account("other"))
    assert await storage.accounts.delete("acc", force=False, now=T0) == 0
    assert await storage.accounts.get("acc") is None
    assert [a.id for a in await storage.accounts.list()] == ["other"]
    with pytest.raises(AccountNotFound):
        await storage.accounts.delete("acc", force=False, now=T0)


async def test_delete_with_only_finished_messages_needs_no_force(storage, make_account, make_message) -> None:
    await storage.accounts.upsert(make_account("acc"))
    await storage.messages.enqueue([make_message("s"), make_message("e")], T0)
    await storage.queue.record_outcomes([Sent("s", "acc", T0 + 1), Failed("e", "acc", T0 + 1, error="550")])
    assert await storage.accounts.delete("acc", force=False, now=T0 + 2) == 0
    assert await storage.accounts.get("acc") is None


async def test_delete_with_unsent_messages_raises_account_in_use(storage, make_account, make_message) -> None:
    await storage.accounts.upsert(make_account("acc"))
    await storage.messages.enqueue([make_message("m1"), make_message("m2", deferred_ts=T0 + 600)], T0)
    with pytest.raises(AccountInUse):
        await storage.accounts.delete("acc", force=False, now=T0)
    assert await storage.accounts.get("acc") is not None
    for mid in ("m1", "m2"):
        record = await storage.messages.get(mid)
        assert record is not None
        assert record.status is MessageStatus.QUEUED
    assert await storage.reports.pending_reports(100) == []


async def test_delete_force_fails_unsent_messages(storage, make_account, make_message) -> None:
    await storage.accounts.upsert(make_account("acc"))
    await storage.accounts.upsert(make_account("other"))
    await storage.messages.enqueue(
        [
            make_message("queued"),
            make_message("deferred", deferred_ts=T0 + 600),
            make_message("sent"),
            make_message("theirs", "other"),
        ],
        T0,
    )
    await storage.queue.record_outcomes([Sent("sent", "acc", T0 + 1)])
    await storage.reports.mark_reported(await storage.reports.pending_reports(100), T0 + 1)

    assert await storage.accounts.delete("acc", force=True, now=T0 + 5) == 2
    assert await storage.accounts.get("acc") is None
    for mid in ("queued", "deferred"):
        record = await storage.messages.get(mid)
        assert record is not None
        assert record.status is MessageStatus.ERROR
        assert record.error_ts == T0 + 5
        assert record.error is not None
        assert "acc" in record.error
        [attempt] = await storage.messages.attempts(mid)
        assert (attempt.ts, attempt.outcome) == (T0 + 5, AttemptOutcome.PERMANENT_FAILURE)
    sent = await storage.messages.get("sent")
    theirs = await storage.messages.get("theirs")
    assert sent is not None and theirs is not None
    assert (sent.status, theirs.status) == (MessageStatus.SENT, MessageStatus.QUEUED)

    pending = await storage.reports.pending_reports(100)
    assert [r.id for r in pending] == ["queued", "deferred"]
    assert all(r.error_ts == T0 + 5 and r.error and r.deferred_ts is None for r in pending)
    counts = await storage.messages.counts(T0 + 5)
    assert (counts.queued, counts.deferred, counts.error, counts.unreported) == (1, 0, 2, 2)
    assert await storage.queue.claim_due("acc", T0 + 1000, 10, T0 + 1300) == []
    assert await storage.queue.orphaned(T0 + 5, 10) == []


async def test_delete_force_leaves_a_message_being_sent_to_its_outcome(storage, make_account, make_message) -> None:
    """A message in flight when its account is deleted ends as what the SMTP server said."""
    await storage.accounts.upsert(make_account("acc"))
    await storage.messages.enqueue([make_message("flying"), make_message("waiting", deferred_ts=T0 + 600)], T0)
    await storage.queue.claim_due("acc", T0 + 1, 10, T0 + 300)
    assert await storage.accounts.delete("acc", force=True, now=T0 + 5) == 1
    await storage.queue.record_outcomes([Sent("flying", "acc", T0 + 6)])
    flying = await storage.messages.get("flying")
    assert flying is not None and flying.status is MessageStatus.SENT


async def test_forced_delete_does_not_count_as_a_delivery_attempt(storage, make_account, make_message) -> None:
    await storage.accounts.upsert(make_account("acc"))
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.accounts.delete("acc", force=True, now=T0 + 5)
    record = await storage.messages.get("m1")
    assert record is not None
    assert (record.attempts, record.first_attempt_ts) == (0, None)


async def test_service_state_defaults_to_active(storage) -> None:
    assert await storage.service.is_active() is True


async def test_service_state_set_active(storage) -> None:
    await storage.service.set_active(False)
    assert await storage.service.is_active() is False
    await storage.service.set_active(False)
    assert await storage.service.is_active() is False
    await storage.service.set_active(True)
    assert await storage.service.is_active() is True


# ------------------------------------------------------------------------------- restarts


async def test_state_survives_a_restart(persistent_backend, make_account, make_message) -> None:
    account = make_account("acc", password="pw", limits=RateLimits(per_minute=3))
    async with persistent_backend.open() as first:
        await first.accounts.upsert(account)
        await first.service.set_active(False)
        await first.messages.enqueue([make_message("m1"), make_message("m2")], T0)
        await first.queue.record_outcomes([Sent("m1", "acc", T0 + 1)])
    async with persistent_backend.open() as second:
        assert await second.service.is_active() is False
        assert await second.accounts.list() == [account]
        m1 = await second.messages.get("m1")
        assert m1 is not None
        assert m1.status is MessageStatus.SENT
        assert [r.id for r in await second.reports.pending_reports(10)] == ["m1"]
        assert await second.queue.send_history("acc", T0) == [T0 + 1]
        await second.service.set_active(True)
    async with persistent_backend.open() as third:
        assert await third.service.is_active() is True


async def test_sqlite_schema_version_is_the_last_migration(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "schema.db"))
    await db.open()
    try:
        assert await db.schema_version() == MIGRATIONS[-1][0]
    finally:
        await db.close()


async def test_sqlite_reopening_an_existing_file_keeps_schema_and_data(tmp_path: Path) -> None:
    path = str(tmp_path / "nested" / "dir" / "reopen.db")
    for round_ in range(3):
        db = SqliteDatabase(path)
        await db.open()
        try:
            assert await db.schema_version() == MIGRATIONS[-1][0]
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO service_state (key, value) VALUES (?, ?)", (f"k{round_}", "v"))
            async with db.read() as conn, conn.execute("SELECT count(*) FROM service_state") as cur:
                row = await cur.fetchone()
            assert row is not None
            assert row[0] == round_ + 1
            async with db.read() as conn, conn.execute("SELECT count(*) FROM schema_version") as cur:
                row = await cur.fetchone()
            assert row is not None
            assert row[0] == 1
        finally:
            await db.close()


async def test_sqlite_upgrades_a_version_one_file_keeping_its_data(tmp_path: Path) -> None:
    """A file written by the first release (schema 1 only) opens, migrates and keeps its rows."""
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[0][1]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO accounts (id, host, port, limit_behavior) VALUES ('old', 'smtp.example.com', 25, 'defer')"
        )
        conn.execute(
            "INSERT INTO messages (id, account_id, priority, status, payload, created_ts, available_at)"
            " VALUES ('m1', 'old', 2, 'queued', ?, ?, ?)",
            ('{"from":"a@example.com","to":["b@example.org"],"cc":[],"bcc":[],"reply_to":null,'
             '"return_path":null,"subject":"s","body":"b","content_type":"plain","headers":[],'
             '"message_id":null,"attachments":[],"deferred_ts":null}', T0, T0),
        )  # fmt: skip
    conn.close()
    db = SqliteDatabase(str(path))
    await db.open()
    try:
        assert await db.schema_version() == MIGRATIONS[-1][0]
        account = await SqliteAccountStore(db).get("old")
        assert account == Account("old", "smtp.example.com", 25)
        record = await SqliteMessageStore(db).get("m1")
        assert record is not None
        assert (record.message.subject, record.message.html_body, record.status) == ("s", None, MessageStatus.QUEUED)
    finally:
        await db.close()


def test_sqlite_migrations_are_numbered_upwards_from_one() -> None:
    versions = [version for version, _ in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
