"""Secrets: SMTP passwords encrypted at rest with a configured key; never echoed back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.secret_box import FernetSecretBox, PlainSecretBox, SecretBoxError, generate_key
from adapters.sqlite.accounts import SqliteAccountStore
from adapters.sqlite.database import SqliteDatabase
from core.model import Account
from entrypoints.settings import ConfigError, load_settings


async def _store(path: Path, box) -> tuple[SqliteDatabase, SqliteAccountStore]:
    db = SqliteDatabase(str(path))
    await db.open()
    return db, SqliteAccountStore(db, box)


def _stored_password(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT password FROM accounts WHERE id = 'acc'").fetchone()[0]


async def test_password_is_encrypted_at_rest_and_read_back(tmp_path: Path) -> None:
    path, key = tmp_path / "s.db", generate_key()
    db, store = await _store(path, FernetSecretBox(key))
    await store.upsert(Account(id="acc", host="smtp.test", user="u", password="pa55-word"))
    assert (await store.get("acc")).password == "pa55-word"
    await db.close()
    stored = _stored_password(path)
    assert stored.startswith("fernet:") and "pa55-word" not in stored
    assert b"pa55-word" not in path.read_bytes()


async def test_introducing_a_key_seals_existing_passwords(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db, plain = await _store(path, PlainSecretBox())
    await plain.upsert(Account(id="acc", host="smtp.test", user="u", password="old-secret"))
    await db.close()
    assert _stored_password(path) == "old-secret"
    db, sealed = await _store(path, FernetSecretBox(generate_key()))
    assert await sealed.seal_stored_passwords() == 1
    assert (await sealed.get("acc")).password == "old-secret"
    await db.close()
    assert _stored_password(path).startswith("fernet:")


async def test_encrypted_passwords_without_the_key_fail_clearly(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db, store = await _store(path, FernetSecretBox(generate_key()))
    await store.upsert(Account(id="acc", host="smtp.test", user="u", password="x"))
    await db.close()
    for box in (PlainSecretBox(), FernetSecretBox(generate_key())):
        db, store = await _store(path, box)
        with pytest.raises(SecretBoxError):
            await store.seal_stored_passwords()
        await db.close()


def test_malformed_key_is_a_configuration_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYNCMAIL_STORAGE__SECRET_KEY", "not-a-key")
    with pytest.raises(ConfigError, match=r"storage\.secret_key: Value error, \[storage\] secret_key must be"):
        load_settings()


def test_account_repr_hides_the_password() -> None:
    assert "hunter2" not in repr(Account(id="a", host="h", password="hunter2"))
