"""Errors raised by the core. Each docstring is the default message."""

from __future__ import annotations


class CoreError(Exception):
    """asyncmail core error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidMessage(CoreError):
    """The message is invalid."""


class InvalidPriority(InvalidMessage):
    """Priority must be one of immediate, high, medium, low or 0-3."""


class AccountNotFound(CoreError):
    """No such account."""


class AccountInUse(CoreError):
    """The account still has unsent messages; delete with force=true to fail them."""


class MessageNotFound(CoreError):
    """No such message."""
