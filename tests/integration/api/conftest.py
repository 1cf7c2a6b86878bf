"""The API through create_app() and its lifespan, on a real SQLite file.

`start_api(**sections)` builds settings from section overrides, runs the lifespan and returns an
httpx client bound to the app; everything is closed at the end of the test. Restarting is
calling it again with the same db_path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from entrypoints.api.app import create_app
from entrypoints.settings import Settings

FROZEN_START = 1_800_000_000.0

StartApi = Callable[..., Awaitable[httpx.AsyncClient]]


def api_settings(db_path: Path, **sections: dict[str, Any]) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "storage": {"backend": "sqlite", "db_path": str(db_path)},
        "delivery": {"test_mode": True},
        "sync": {"backend": "memory"},
        "clock": {"frozen_start": FROZEN_START},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Settings(**base)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "asyncmail.db"


@pytest.fixture
async def start_api(db_path: Path) -> AsyncIterator[StartApi]:
    async with AsyncExitStack() as stack:

        async def start(headers: dict[str, str] | None = None, **sections: dict[str, Any]) -> httpx.AsyncClient:
            settings = api_settings(db_path, **sections)
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://asyncmail.test", headers=headers or {}
            )
            await stack.enter_async_context(client)
            client.app = app  # type: ignore[attr-defined]
            return client

        yield start


@pytest.fixture
async def api(start_api: StartApi) -> httpx.AsyncClient:
    """A test_mode instance with one account 'accA' (no rate limits)."""
    client = await start_api()
    response = await client.post("/account", json={"id": "accA", "host": "smtp.invalid", "port": 25})
    assert response.status_code == 200, response.text
    return client


def _message(mid: str, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": mid,
        "account_id": "accA",
        "from": "Sender <sender@example.com>",
        "to": ["rcpt@example.org"],
        "subject": f"subject {mid}",
        "body": f"body of {mid}",
    }
    entry.update(fields)
    return entry


@pytest.fixture
def msg() -> Callable[..., dict[str, Any]]:
    """msg("M1", priority="high") -> a valid add-messages entry for account accA."""
    return _message
