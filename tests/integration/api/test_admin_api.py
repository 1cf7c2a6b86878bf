"""Accounts, message listing, metrics, auth and test_mode-only routes."""

from __future__ import annotations

import pytest


async def test_account_create_update_keeps_password_and_never_returns_it(start_api) -> None:
    client = await start_api()
    created = await client.post(
        "/account", json={"id": "accA", "host": "smtp.one", "user": "u", "password": "s3cr3t-pw"}
    )
    assert created.status_code == 200
    assert created.json()["account"]["has_password"] is True
    updated = await client.post("/account", json={"id": "accA", "host": "smtp.two", "user": "u", "limit_per_day": 5})
    assert updated.json()["account"]["has_password"] is True
    assert updated.json()["account"]["host"] == "smtp.two"
    listing = await client.get("/accounts")
    assert [a["id"] for a in listing.json()["accounts"]] == ["accA"]
    assert listing.json()["accounts"][0]["limit_per_day"] == 5
    for response in (created, updated, listing):
        assert "s3cr3t-pw" not in response.text
        assert "password" not in response.json().get("account", {})


async def test_account_validation_errors_are_4xx_with_reason(start_api) -> None:
    client = await start_api()
    response = await client.post("/account", json={"id": "accA", "host": "h", "port": 70000})
    assert response.status_code == 422
    assert "port" in response.json()["detail"]


async def test_delete_account_404_409_and_force(api, msg) -> None:
    assert (await api.delete("/account/ghost")).status_code == 404
    await api.post("/commands/add-messages", json={"messages": [msg("M1"), msg("M2")]})
    refused = await api.delete("/account/accA")
    assert refused.status_code == 409
    assert "2 unsent" in refused.json()["detail"]
    forced = await api.delete("/account/accA", params={"force": "true"})
    assert forced.json() == {"ok": True, "id": "accA", "failed_messages": 2}
    assert (await api.get("/accounts")).json()["accounts"] == []
    failed = (await api.get("/messages/M1")).json()["message"]
    assert failed["state"] == "error"
    assert failed["error"] == "account 'accA' was deleted"
    await api.post("/commands/run-now")
    reported = [r for b in (await api.get("/test/reports")).json()["batches"] for r in b]
    assert sorted(r["id"] for r in reported if r["error"]) == ["M1", "M2"]


async def test_messages_pagination_and_filters(start_api, msg) -> None:
    client = await start_api()
    for account in ("accA", "accB"):
        await client.post("/account", json={"id": account, "host": "smtp.invalid"})
    entries = [msg(f"A{i}") for i in range(5)] + [msg(f"B{i}", account_id="accB") for i in range(3)]
    await client.post("/commands/add-messages", json={"messages": entries})
    await client.post("/commands/suspend")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/messages", params=params)).json()
        seen += [m["id"] for m in page["messages"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in entries]
    only_b = (await client.get("/messages", params={"account_id": "accB"})).json()["messages"]
    assert [m["id"] for m in only_b] == ["B0", "B1", "B2"]
    await client.post("/commands/activate")
    await client.post("/commands/run-now")
    sent = (await client.get("/messages", params={"state": "sent", "limit": 1000})).json()
    assert len(sent["messages"]) == 8 and sent["next_cursor"] is None
    assert (await client.get("/messages", params={"state": "queued"})).json()["messages"] == []


@pytest.mark.parametrize("params", [{"cursor": "abc"}, {"limit": 0}, {"limit": 5000}, {"state": "bogus"}])
async def test_messages_bad_query_is_4xx(api, params) -> None:
    response = await api.get("/messages", params=params)
    assert response.status_code in (400, 422)
    assert response.json()["ok"] is False


async def test_message_detail_404(api) -> None:
    response = await api.get("/messages/nope")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "detail": "no message 'nope'"}


async def test_metrics_have_account_labels_from_the_start(api, msg) -> None:
    text = (await api.get("/metrics")).text
    for name in ("sent", "errors", "deferred", "rate_limited"):
        assert f'asyncmail_{name}_total{{account_id="accA"}} 0.0' in text
    await api.post("/account", json={"id": "accB", "host": "smtp.invalid"})
    assert 'asyncmail_sent_total{account_id="accB"} 0.0' in (await api.get("/metrics")).text
    await api.post("/commands/add-messages", json={"messages": [msg("M1"), msg("M2")]})
    assert "asyncmail_pending_messages 2.0" in (await api.get("/metrics")).text
    await api.post("/commands/run-now")
    text = (await api.get("/metrics")).text
    assert 'asyncmail_sent_total{account_id="accA"} 2.0' in text
    assert "asyncmail_pending_messages 0.0" in text


ROUTES = [
    ("POST", "/commands/add-messages", {"messages": []}),
    ("POST", "/commands/run-now", None),
    ("POST", "/commands/suspend", None),
    ("POST", "/commands/activate", None),
    ("POST", "/account", {"id": "accZ", "host": "smtp.invalid"}),
    ("GET", "/accounts", None),
    ("DELETE", "/account/accZ", None),
    ("GET", "/messages", None),
    ("GET", "/messages/x", None),
    ("GET", "/status", None),
    ("GET", "/metrics", None),
    ("GET", "/docs", None),
    ("GET", "/redoc", None),
    ("GET", "/openapi.json", None),
    ("GET", "/test/outbox", None),
    ("POST", "/test/clock", {"advance": 0}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_requires_the_token(start_api, method, path, body) -> None:
    client = await start_api(server={"api_token": "tok-123"})
    for headers in ({}, {"X-API-Token": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "tok-123"}):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
    for headers in ({"X-API-Token": "tok-123"}, {"Authorization": "Bearer tok-123"}):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code not in (401, 403), (headers, response.text)
        assert response.status_code < 500


async def test_docs_can_be_left_open(start_api) -> None:
    client = await start_api(server={"api_token": "tok-123", "protect_docs": False})
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/status")).status_code == 401


async def test_seed_api_token_variable_is_honoured(start_api, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN", "from-env")
    from entrypoints.settings import load_settings

    assert load_settings().server.api_token.get_secret_value() == "from-env"


async def test_test_routes_exist_only_in_test_mode(start_api) -> None:
    client = await start_api(delivery={"test_mode": False}, smtp={"backend": "memory"}, clock={"backend": "frozen"})
    assert (await client.get("/test/outbox")).status_code == 404
    assert (await client.get("/test/clock")).status_code == 404
    assert (await client.get("/status")).json()["test_mode"] is False


async def test_openapi_documents_every_seed_path(api) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path in (
        "/commands/add-messages",
        "/commands/run-now",
        "/commands/suspend",
        "/commands/activate",
        "/account",
        "/accounts",
        "/account/{account_id}",
        "/messages",
        "/metrics",
    ):
        assert path in spec["paths"]
    assert "MessagePayload" in spec["components"]["schemas"]
    assert "from" in spec["components"]["schemas"]["MessagePayload"]["properties"]
