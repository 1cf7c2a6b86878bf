"""asyncmail command line: `asyncmail serve`, `asyncmail check-config`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
from pathlib import Path

from entrypoints.settings import ConfigError, Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asyncmail", description="Asynchronous e-mail dispatch service.")
    parser.add_argument("--config", metavar="PATH", help="TOML settings file (default: config/asyncmail.toml)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API and the delivery loops")
    serve.add_argument("--host", help="override [server] host")
    serve.add_argument("--port", type=int, help="override [server] port")
    commands.add_parser("check-config", help="load the settings, print them without secrets, and exit")
    commands.add_parser("generate-key", help="print a new [storage] secret_key for encrypting SMTP passwords")
    args = parser.parse_args(argv)
    if args.command == "generate-key":
        from adapters.secret_box import generate_key

        print(generate_key())
        return 0
    try:
        settings = load_settings(args.config)
        if args.command == "serve":
            preflight(settings)
            return _serve(settings, args.host, args.port)
        print(settings.model_dump_json(indent=2))
        return 0
    except ConfigError as exc:
        print(f"asyncmail: {exc}", file=sys.stderr)
        return 2


def preflight(settings: Settings) -> None:
    """Fail before serving, with one line, when the storage cannot be opened."""
    storage = settings.storage
    if storage.backend == "sqlite":
        try:
            path = Path(storage.db_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(path).close()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open storage.db_path {storage.db_path}: {exc}") from None
    elif storage.backend == "postgres" and storage.postgres_dsn is not None:
        try:
            asyncio.run(_reach_postgres(storage.postgres_dsn.get_secret_value()))
        except Exception as exc:  # asyncpg's errors share no base class with OSError
            raise ConfigError(f"cannot reach PostgreSQL (storage.postgres_dsn): {type(exc).__name__}") from None


async def _reach_postgres(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    await conn.close()


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from entrypoints.api.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per report POST is noise
    overrides = {"host": host, "port": port}
    server = settings.server.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    settings = settings.model_copy(update={"server": server})
    uvicorn.run(create_app(settings), host=server.host, port=server.port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
