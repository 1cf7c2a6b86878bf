"""asyncmail command line: `asyncmail serve`, `asyncmail check-config`."""

from __future__ import annotations

import argparse
import logging
import sys

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
            return _serve(settings, args.host, args.port)
        print(settings.model_dump_json(indent=2))
        return 0
    except ConfigError as exc:
        print(f"asyncmail: {exc}", file=sys.stderr)
        return 2


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
