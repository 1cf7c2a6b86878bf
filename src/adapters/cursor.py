"""Pagination cursors shared by the storage adapters: the last row's sequence number as text."""

from __future__ import annotations

from ports.message_store import InvalidCursor


def parse_cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise InvalidCursor(f"invalid cursor {cursor!r}")
    return int(cursor)
