"""Encryption at rest for SMTP passwords (Fernet: AES-128-CBC + HMAC-SHA256).

Sealed values carry a prefix, so a database may hold both while a key is being introduced.
Without a key, `PlainSecretBox` stores passwords as given and the service says so at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken

PREFIX = "fernet:"


class SecretBoxError(ValueError):
    """A stored secret cannot be opened (no key, or the wrong key)."""


class SecretBox(Protocol):
    encrypts: bool

    def seal(self, value: str) -> str: ...

    def open(self, stored: str) -> str: ...


class PlainSecretBox:
    encrypts = False

    def seal(self, value: str) -> str:
        return value

    def open(self, stored: str) -> str:
        if stored.startswith(PREFIX):
            raise SecretBoxError("an SMTP password is encrypted but no [storage] secret_key is configured")
        return stored


class FernetSecretBox:
    encrypts = True

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except ValueError as exc:
            raise SecretBoxError("[storage] secret_key must be 32 url-safe base64-encoded bytes (Fernet key)") from exc

    def seal(self, value: str) -> str:
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError("an SMTP password cannot be decrypted with the configured secret_key") from exc


def generate_key() -> str:
    return Fernet.generate_key().decode()


def resealed(box: SecretBox, stored: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(sealed password, account id) for each stored password that `box` should seal now.

    Every stored value is opened first, so a wrong or missing key fails here, at start-up.
    """
    opened = [(account_id, value, box.open(value)) for account_id, value in stored]
    if not box.encrypts:
        return []
    return [(box.seal(plain), account_id) for account_id, value, plain in opened if not value.startswith(PREFIX)]
