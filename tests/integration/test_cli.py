"""The command line: configuration errors are one line and exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ASYNCMAIL = [sys.executable, "-m", "entrypoints.cli"]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCMAIL_") and k != "API_TOKEN"}
    return subprocess.run(
        [*ASYNCMAIL, *args], cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60
    )


def test_check_config_prints_effective_settings_without_secrets(tmp_path: Path) -> None:
    result = run_cli("check-config", cwd=tmp_path, env={"API_TOKEN": "hunter2", "ASYNCMAIL_SERVER__PORT": "9001"})
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["server"]["port"] == 9001
    assert "hunter2" not in result.stdout


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ASYNCMAIL_DELIVERY__SEND_INTERVAL_SECONDS": "-1"},
            "delivery.send_interval_seconds: Input should be greater than 0",
        ),
        ({"ASYNCMAIL_STORAGE__BACKEND": "oracle"}, "storage.backend: Input should be 'sqlite', 'memory' or 'postgres'"),
        (
            {"ASYNCMAIL_SYNC__PROXY_SYNC_URL": "ftp://x"},
            "sync.proxy_sync_url: Value error, must be an http:// or https:// URL",
        ),
        ({"ASYNCMAIL_DELIVERY__DEFAULT_PRIORITY": "soon"}, "delivery.default_priority"),
        ({"ASYNCMAIL_SERVER__PORT": "http"}, "server.port"),
    ],
)
def test_bad_environment_fails_with_one_line_naming_the_key(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    result = run_cli("serve", cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asyncmail: invalid configuration")
    assert expected in lines[0]


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text("[delivery]\nsend_intervall_seconds = 3\n")
    result = run_cli("--config", str(config), "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"asyncmail: invalid configuration in {config} or environment: delivery.send_intervall_seconds: unknown setting"
    )


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text("[server]\nport = 8123\n[delivery]\nbatch_size_per_account = 7\n")
    result = run_cli("check-config", cwd=tmp_path, env={"ASYNCMAIL_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert (settings["server"]["port"], settings["delivery"]["batch_size_per_account"]) == (8123, 7)


def test_env_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nport = 8123\n")
    result = run_cli("--config", str(config), "check-config", cwd=tmp_path, env={"ASYNCMAIL_SERVER__PORT": "8124"})
    assert json.loads(result.stdout)["server"]["port"] == 8124


def test_missing_config_file_and_bad_toml(tmp_path: Path) -> None:
    missing = run_cli("--config", str(tmp_path / "nope.toml"), "check-config", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"asyncmail: config file {tmp_path / 'nope.toml'} does not exist"
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport = ")
    result = run_cli("--config", str(broken), "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"asyncmail: config file {broken} is not valid TOML")
    assert len(result.stderr.strip().splitlines()) == 1


def test_shipped_config_file_matches_built_in_defaults() -> None:
    import tomllib

    from entrypoints.settings import Settings

    shipped = tomllib.loads((Path(__file__).parents[2] / "config" / "asyncmail.toml").read_text())
    defaults = Settings.model_construct().model_dump()
    built_in = {name: type(value)().model_dump() for name, value in Settings().__dict__.items()}
    for section, values in shipped.items():
        for key, value in values.items():
            assert built_in[section][key] == value, f"[{section}] {key}: file {value!r} != default"
    assert set(shipped) == set(defaults)


def test_unopenable_storage_fails_before_serving(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = run_cli("serve", cwd=tmp_path, env={"ASYNCMAIL_STORAGE__DB_PATH": str(blocker / "a.db")})
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"asyncmail: cannot open storage.db_path {blocker / 'a.db'}:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_postgres_fails_before_serving_without_showing_the_dsn(tmp_path: Path) -> None:
    env = {
        "ASYNCMAIL_STORAGE__BACKEND": "postgres",
        "ASYNCMAIL_STORAGE__POSTGRES_DSN": "postgresql://app:pa55word@127.0.0.1:1/test",
    }
    result = run_cli("serve", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("asyncmail: cannot reach PostgreSQL (storage.postgres_dsn)")
    assert "pa55word" not in result.stderr
