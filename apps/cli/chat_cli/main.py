"""`chat serve | worker | migrate`: the console entry point."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from pydantic import ValidationError

from chat_bootstrap.settings import Settings


def _event_loop_runner(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            print(f"chat: configuration error: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def _configure_logging(settings: Settings) -> None:
    from chat_bootstrap.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def _serve(args: argparse.Namespace) -> None:
    from chat_server.serving import run_server

    settings = _settings()
    _configure_logging(settings)
    _event_loop_runner(run_server(settings, args.host, args.port))


def _worker(args: argparse.Namespace) -> None:
    from chat_worker.main import run_worker

    settings = _settings()
    _configure_logging(settings)
    try:
        _event_loop_runner(run_worker(settings))
    except ValueError as exc:
        print(f"chat worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _migrate(args: argparse.Namespace) -> None:
    from chat_bootstrap.migrations import migrate_database

    settings = _settings()
    _configure_logging(settings)
    _event_loop_runner(migrate_database(settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat", description="The chat backend.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a server node (REST + socket.io)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)
    worker = commands.add_parser("worker", help="run a consumer (CHAT_BROKER=rabbitmq)")
    worker.set_defaults(run=_worker)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
