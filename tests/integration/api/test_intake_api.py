"""POST /commands/add-messages: per-entry reasons, request-level errors, duplicates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

BAD_ENTRIES: list[tuple[dict[str, Any], str]] = [
    ({"id": ""}, "missing id"),
    ({"id": None}, "id"),
    ({"from": "not-an-address"}, "malformed from address"),
    ({"to": ["a@b@c"]}, "malformed to address"),
    ({"to": []}, "missing to"),
    ({"cc": ["bad address@x.org"]}, "malformed cc address"),
    ({"bcc": ["x@-bad.org"]}, "malformed bcc address"),
    ({"account_id": "nobody"}, "unknown account 'nobody'"),
    ({"subject": "hi\r\nBcc: victim@example.org"}, "subject contains CR, LF or NUL"),
    ({"headers": {"X-Tag": "a\nb"}}, "header 'X-Tag' contains CR, LF or NUL"),
    ({"headers": {"Bcc": "x@y.org"}}, "is set from the message fields"),
    ({"priority": "urgent"}, "bad priority"),
    ({"priority": 7}, "bad priority"),
    ({"body": "x" * (2 * 1024 * 1024)}, "body too large"),
    ({"attachments": [{"filename": "a.txt", "content": "***"}]}, "not valid base64"),
    ({"surprise": 1}, "unknown field 'surprise'"),
    ({"content_type": "pdf"}, "content_type"),
]


@pytest.mark.parametrize(("override", "reason"), BAD_ENTRIES)
async def test_each_bad_entry_is_rejected_alone_with_its_reason(start_api, msg, override, reason) -> None:
    client: httpx.AsyncClient = await start_api(delivery={"max_message_bytes": 1024 * 1024})
    await client.post("/account", json={"id": "accA", "host": "smtp.invalid"})
    bad = {**msg("BAD"), **override}
    response = await client.post("/commands/add-messages", json={"messages": [msg("GOOD-1"), bad, msg("GOOD-2")]})
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["queued"] == 2
    assert len(body["rejected"]) == 1
    assert reason in body["rejected"][0]["reason"]
    listed = (await client.get("/messages")).json()["messages"]
    assert [m["id"] for m in listed] == ["GOOD-1", "GOOD-2"]


async def test_rejection_names_the_entry_id(api, msg) -> None:
    response = await api.post("/commands/add-messages", json={"messages": [msg("M1", to=["nope"])]})
    assert response.json()["rejected"] == [
        {"id": "M1", "reason": "malformed to address 'nope': missing local part or @"}
    ]


async def test_non_object_entries_are_rejected_per_entry(api, msg) -> None:
    response = await api.post("/commands/add-messages", json={"messages": [5, "x", msg("M1")]})
    body = response.json()
    assert body["queued"] == 1
    assert [r["reason"] for r in body["rejected"]] == ["entry must be a JSON object"] * 2


async def test_duplicates_in_batch_and_already_stored_never_send_twice(api, msg) -> None:
    first = await api.post("/commands/add-messages", json={"messages": [msg("M1"), msg("M1"), msg("M2")]})
    assert first.json()["queued"] == 2
    assert first.json()["rejected"] == [{"id": "M1", "reason": "duplicate id: repeated in this batch"}]
    await api.post("/commands/run-now")
    again = await api.post("/commands/add-messages", json={"messages": [msg("M1"), msg("M2")]})
    assert again.json()["queued"] == 0
    assert {r["id"] for r in again.json()["rejected"]} == {"M1", "M2"}
    assert all("already stored" in r["reason"] for r in again.json()["rejected"])
    await api.post("/commands/run-now")
    outbox = (await api.get("/test/outbox")).json()["messages"]
    assert sorted(m["id"] for m in outbox) == ["M1", "M2"]


async def test_not_json_is_a_request_level_error(api) -> None:
    response = await api.post(
        "/commands/add-messages", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["ok"] is False
    assert "JSON" in response.json()["detail"]


async def test_missing_messages_key_is_a_request_level_error(api) -> None:
    response = await api.post("/commands/add-messages", json={"msgs": []})
    assert response.status_code == 422
    assert "messages" in response.json()["detail"]


async def test_too_many_messages_is_refused_with_the_cap(start_api, msg) -> None:
    client = await start_api(server={"max_batch": 3})
    await client.post("/account", json={"id": "accA", "host": "smtp.invalid"})
    response = await client.post("/commands/add-messages", json={"messages": [msg(f"M{i}") for i in range(4)]})
    assert response.status_code == 400
    assert response.json() == {"ok": False, "detail": "too many messages: 4 > 3 per request"}
    assert (await client.get("/messages")).json()["messages"] == []


async def test_oversized_body_is_refused_with_413(start_api, msg) -> None:
    client = await start_api(server={"max_request_bytes": 4096})
    response = await client.post("/commands/add-messages", json={"messages": [msg("M1", body="x" * 10_000)]})
    assert response.status_code == 413
    assert "larger than 4096 bytes" in response.json()["detail"]


async def test_default_priority_applies_to_entries_without_one(api, msg) -> None:
    body = {"messages": [msg("M1"), msg("M2", priority=0)], "default_priority": "low"}
    assert (await api.post("/commands/add-messages", json=body)).json()["queued"] == 2
    listed = {m["id"]: m["priority"] for m in (await api.get("/messages")).json()["messages"]}
    assert listed == {"M1": 3, "M2": 0}


async def test_bad_default_priority_is_a_request_level_error(api, msg) -> None:
    response = await api.post("/commands/add-messages", json={"messages": [msg("M1")], "default_priority": "soon"})
    assert response.status_code == 400
    assert "default_priority" in response.json()["detail"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-1", "1e309"])
async def test_non_finite_or_negative_deferred_ts_is_rejected_not_dropped(api, literal) -> None:
    body = (
        '{"messages": [{"id": "M1", "account_id": "accA", "from": "a@example.com", "to": ["b@example.org"],'
        f' "deferred_ts": {literal}}}]}}'
    )
    response = await api.post("/commands/add-messages", content=body, headers={"content-type": "application/json"})
    assert response.json()["queued"] == 0
    assert "deferred_ts" in response.json()["rejected"][0]["reason"]
    assert (await api.get("/status")).json()["queue"]["queued"] == 0


async def test_oversized_chunked_body_is_refused_with_413(start_api, msg) -> None:
    client = await start_api(server={"max_request_bytes": 4096})

    async def chunks():
        yield b'{"messages": [{"id": "M1", "body": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    response = await client.post(
        "/commands/add-messages", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"ok": False, "detail": "request body larger than 4096 bytes"}


async def test_a_lone_surrogate_rejects_its_entry_only(api, msg) -> None:
    body = (
        '{"messages": [{"id": "BAD", "account_id": "accA", "from": "a@example.com", "to": ["b@example.org"],'
        ' "subject": "\\ud800"}, {"id": "OK", "account_id": "accA", "from": "a@example.com", "to": ["b@example.org"]}]}'
    )
    response = await api.post("/commands/add-messages", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["queued"] == 1
    assert response.json()["rejected"][0]["id"] == "BAD"
    assert "surrogate" in response.json()["rejected"][0]["reason"]
