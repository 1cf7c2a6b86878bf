"""The settings tree: defaults < config/asyncmail.toml (or --config / ASYNCMAIL_CONFIG) < API_TOKEN < ASYNCMAIL_* env.

Env overrides use ASYNCMAIL_<SECTION>__<KEY>, e.g. ASYNCMAIL_SERVER__PORT=8080.
`delivery.test_mode = true` rewires smtp to the recording sender and the clock to a frozen one.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from adapters.secret_box import FernetSecretBox
from core.errors import InvalidPriority
from core.policies.priority import parse_priority

DEFAULT_CONFIG = Path("config/asyncmail.toml")


class ConfigError(Exception):
    """Configuration is invalid; the message is one line naming the key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_token: SecretStr | None = None

    @field_validator("api_token")
    @classmethod
    def _no_empty_token(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token would read as 'no token'; refuse it rather than open the API silently."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty (leave it unset to run without a token)")
        return value

    protect_docs: bool = True
    max_batch: int = Field(1000, ge=1, le=100_000)
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)


class StorageSettings(Section):
    backend: Literal["sqlite", "memory", "postgres"] = "sqlite"
    db_path: str = "data/asyncmail.db"
    postgres_dsn: SecretStr | None = Field(None, description="postgresql://user:password@host:5432/dbname")
    postgres_pool_size: int = Field(10, ge=2, le=200)
    secret_key: SecretStr | None = Field(None, description="Fernet key: SMTP passwords are encrypted at rest")

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> StorageSettings:
        if self.backend == "postgres" and not self.postgres_dsn:
            raise ValueError("backend 'postgres' needs postgres_dsn")
        return self

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            FernetSecretBox(value.get_secret_value())  # raises with a clear message when malformed
            return value
        return None


class DeliverySettings(Section):
    send_interval_seconds: float = Field(5.0, gt=0)
    batch_size_per_account: int = Field(50, ge=1, le=10_000)
    default_priority: str | int = "medium"
    test_mode: bool = False
    retention_seconds: float = Field(7 * 86400.0, ge=0)
    retention_interval_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(300.0, gt=0)
    max_message_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_attachments: int = Field(20, ge=0)
    max_headers: int = Field(50, ge=0)
    retry_base_seconds: float = Field(60.0, gt=0)
    retry_factor: float = Field(2.0, ge=1, le=10)
    retry_max_delay_seconds: float = Field(3600.0, gt=0)
    retry_max_attempts: int = Field(30, ge=1, le=1000)
    retry_max_lifetime_seconds: float = Field(5 * 86400.0, gt=0)
    retry_jitter: float = Field(0.1, ge=0, le=1)
    throttle_seconds: float = Field(60.0, ge=0)
    shutdown_grace_seconds: float = Field(10.0, ge=0)

    @field_validator("default_priority")
    @classmethod
    def _known_priority(cls, value: str | int) -> str | int:
        try:
            parse_priority(value)
        except InvalidPriority:
            raise ValueError("must be immediate, high, medium, low or 0-3") from None
        return value


class SyncSettings(Section):
    backend: Literal["httpx", "memory"] = "httpx"
    proxy_sync_url: str | None = None
    proxy_sync_user: str | None = None
    proxy_sync_password: SecretStr | None = None
    proxy_sync_token: SecretStr | None = None
    batch_size: int = Field(100, ge=1, le=10_000)
    interval_seconds: float = Field(5.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("proxy_sync_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class SmtpSettings(Section):
    backend: Literal["aiosmtplib", "memory"] = "aiosmtplib"
    timeout_seconds: float = Field(30.0, gt=0)
    validate_certs: bool = True
    helo_hostname: str | None = Field(None, description="name given in EHLO; default: this host's name")


class ClockSettings(Section):
    backend: Literal["system", "frozen"] = "system"
    frozen_start: float | None = Field(None, ge=0, description="start of a frozen clock; default: wall time at start")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASYNCMAIL_", env_nested_delimiter="__", extra="forbid", frozen=True)

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    delivery: DeliverySettings = DeliverySettings()
    sync: SyncSettings = SyncSettings()
    smtp: SmtpSettings = SmtpSettings()
    clock: ClockSettings = ClockSettings()

    @model_validator(mode="before")
    @classmethod
    def _test_mode_wiring(cls, data: Any) -> Any:
        """test_mode selects the recording SMTP sender and the frozen clock."""
        if not isinstance(data, dict):
            return data
        delivery = data.get("delivery") or {}
        test_mode = delivery.test_mode if isinstance(delivery, DeliverySettings) else delivery.get("test_mode")
        if str(test_mode).lower() in ("true", "1", "yes"):
            data = dict(data)
            data["smtp"] = {**_as_dict(data.get("smtp")), "backend": "memory"}
            data["clock"] = {**_as_dict(data.get("clock")), "backend": "frozen"}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SeedTokenSource(settings_cls), TomlConfigSettingsSource(settings_cls))


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump()
    return dict(value or {})


class SeedTokenSource(PydanticBaseSettingsSource):
    """The seed's plain API_TOKEN variable, below the ASYNCMAIL_* ones."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        token = os.environ.get("API_TOKEN")
        return {"server": {"api_token": token}} if token else {}


def config_path(explicit: str | None = None) -> Path | None:
    """--config beats ASYNCMAIL_CONFIG beats config/asyncmail.toml (when present)."""
    chosen = explicit or os.environ.get("ASYNCMAIL_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"config file {chosen} does not exist")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings(explicit_path: str | None = None, **overrides: Any) -> Settings:
    """Load once at start-up. Raises ConfigError with one line naming the bad key."""
    path = config_path(explicit_path)

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(exc, path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def describe(exc: ValidationError, path: Path | None) -> str:
    parts = []
    for error in exc.errors():
        key = ".".join(str(loc) for loc in error["loc"]) or "(root)"
        got = error.get("input")
        secret = any(word in key for word in ("secret", "password", "token", "dsn", "url"))
        hidden = secret or isinstance(got, dict) or error["type"] == "extra_forbidden"
        shown = "" if hidden else f" (got {got!r})"
        if error["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown setting")
        else:
            parts.append(f"{key}: {error['msg']}{shown}")
    source = f" in {path} or environment" if path else ""
    return f"invalid configuration{source}: " + "; ".join(parts)
