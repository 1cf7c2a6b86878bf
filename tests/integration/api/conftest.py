"""API tests: `api` (a test_mode instance with account accA) and `msg` (a valid entry).

`start_api` and `db_path` come from tests/integration/conftest.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest


@pytest.fixture
async def api(start_api: Callable[..., Awaitable[httpx.AsyncClient]]) -> httpx.AsyncClient:
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
