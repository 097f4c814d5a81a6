"""The `chat` command: run a node, a worker or the migrations, and administer the service.

Exit codes, for scripts and orchestrators: 0 done; 1 a runtime failure (one line on
stderr saying what to do); 2 a usage or configuration mistake (one line per mistake).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from chat_bootstrap.settings import Settings
from chat_bootstrap.settings_errors import ConfigurationError, load_settings
from chat_cli import admin
from chat_domain.entities import Scope

T = TypeVar("T")
EXIT_FAILURE, EXIT_USAGE = 1, 2
# What every command reads, named in its help so that an operator knows what to set.
READS_STORAGE = "Reads CHAT_DATABASE_URL (see docs/configuration.md for every setting)."
READS_CLUSTER = (
    "Reads CHAT_BROKER, CHAT_RABBITMQ_URL, CHAT_SOCKETIO_MANAGER, CHAT_REDIS_URL, "
    "CHAT_DATABASE_URL, CHAT_SECRET_KEY and the rest of docs/configuration.md."
)


def _package_version() -> str:
    try:
        return version("chat-backend")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        for problem in exc.problems:
            print(f"chat: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _configure_logging(settings: Settings) -> None:
    from chat_bootstrap.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def _serve(args: argparse.Namespace) -> None:
    from chat_server.serving import run_server

    settings = _settings()
    _configure_logging(settings)
    _run(run_server(settings, args.host, args.port))


def _worker(args: argparse.Namespace) -> None:
    from chat_worker.main import run_worker

    settings = _settings()
    if args.ops_port is not None:
        settings = settings.model_copy(update={"worker_ops_port": args.ops_port})
    _configure_logging(settings)
    try:
        _run(run_worker(settings))
    except ValueError as exc:  # a role the configuration cannot run (build_container)
        print(f"chat worker: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except OSError as exc:  # the operations port is taken or not ours to bind
        print(
            f"chat worker: cannot serve the operations endpoints on "
            f"{settings.worker_ops_host}:{settings.worker_ops_port} ({exc.strerror or exc}): "
            "give each worker of a host its own --ops-port (CHAT_WORKER_OPS_PORT), or 0",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_FAILURE) from None


def _migrate(args: argparse.Namespace) -> None:
    settings = _settings()
    _configure_logging(settings)
    _admin(settings, admin.migrate_database(settings), "migrate")
    print("the database is at the latest migration")


def _config(args: argparse.Namespace) -> None:
    settings = _settings()
    for name, value in admin.effective_configuration(settings):
        print(f"{name}={value}")


def _users_create(args: argparse.Namespace) -> None:
    settings = _settings()
    password = args.password or admin.read_password()
    user = _admin_result(
        settings,
        admin.create_user(settings, args.username, password, args.display_name),
        "users create",
    )
    print(f"created user {user.username} ({user.id})")


def _within(settings: Settings) -> str:
    return f"within {settings.session_recheck_seconds:g} s (CHAT_SESSION_RECHECK_SECONDS)"


def _users_deactivate(args: argparse.Namespace) -> None:
    settings = _settings()
    user = _admin_result(
        settings, admin.deactivate_user(settings, args.username), "users deactivate"
    )
    print(
        f"deactivated user {user.username} ({user.id}): logins refused; their tokens and "
        f"sockets end on every server {_within(settings)}"
    )


def _users_reactivate(args: argparse.Namespace) -> None:
    settings = _settings()
    user = _admin_result(
        settings, admin.reactivate_user(settings, args.username), "users reactivate"
    )
    print(f"reactivated user {user.username} ({user.id}): they may log in again")


def _users_reset_password(args: argparse.Namespace) -> None:
    settings = _settings()
    password = args.password or admin.read_password()
    user = _admin_result(
        settings,
        admin.reset_password(settings, args.username, password),
        "users reset-password",
    )
    print(
        f"reset the password of {user.username} ({user.id}): sessions from before end on "
        f"every server {_within(settings)}"
    )


def _rooms_list(args: argparse.Namespace) -> None:
    settings = _settings()
    rooms = _admin_result(settings, admin.list_rooms(settings, args.limit), "rooms list")
    print("id\tkind\tmembers\tlast_seq\tname")
    for listed in rooms:
        room = listed.room
        print(f"{room.id}\t{room.kind.value}\t{listed.member_count}\t{room.last_seq}\t{room.name}")


def _keys_create(args: argparse.Namespace) -> None:
    settings = _settings()
    key, secret = _admin_result(
        settings, admin.create_api_key(settings, args.name, args.scope), "keys create"
    )
    scopes = " ".join(sorted(s.value for s in key.scopes))
    print(f"created API key {key.id} ({scopes}); the key, shown only now:", file=sys.stderr)
    print(secret)


def _keys_list(args: argparse.Namespace) -> None:
    settings = _settings()
    keys = _admin_result(settings, admin.list_api_keys(settings), "keys list")
    print("id\tscopes\tcreated_at\trevoked_at\tname")
    for key in keys:
        scopes = ",".join(sorted(s.value for s in key.scopes))
        revoked = key.revoked_at.isoformat() if key.revoked_at else "-"
        print(f"{key.id}\t{scopes}\t{key.created_at.isoformat()}\t{revoked}\t{key.name}")


def _keys_revoke(args: argparse.Namespace) -> None:
    settings = _settings()
    key = _admin_result(settings, admin.revoke_api_key(settings, args.id), "keys revoke")
    print(f"revoked API key {key.id} ({key.name})")


def _prune(args: argparse.Namespace) -> None:
    settings = _settings()
    days = args.older_than_days if args.older_than_days is not None else settings.retention_days
    if days == 0:
        print("nothing pruned: CHAT_RETENTION_DAYS is 0 (keep everything); pass --older-than-days")
        return
    erased = _admin_result(settings, admin.prune_messages(settings, days), "prune")
    print(f"erased the bodies of {erased} messages older than {days} days")


def _admin(settings: Settings, work: Coroutine[Any, Any, None], command: str) -> None:
    _admin_result(settings, work, command)


def _admin_result(settings: Settings, work: Coroutine[Any, Any, T], command: str) -> T:
    """Run an administrative coroutine; its failures become one line and exit code 1."""
    result: list[T] = []

    async def run() -> None:
        result.append(await work)

    try:
        _run(run())
    except admin.AdminError as exc:
        print(f"chat {command}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    return result[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat",
        description="A self-hosted chat backend: REST + socket.io, a broker that loses "
        "nothing, workers that fan out on any number of nodes.",
        epilog="Configuration is by CHAT_* environment variables or a .env file; "
        "`chat config` shows what is in effect. Exit codes: 0 done, 1 runtime failure, "
        "2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"chat {_package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run a server node (REST + socket.io; the whole service with no configuration)",
        description="Run a server node. With no configuration it is the whole service in "
        "one process (in-memory broker, in-process worker, SQLite). " + READS_CLUSTER,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker",
        help="run a consumer: store accepted messages and fan them out (needs RabbitMQ, Redis)",
        description="Consume RabbitMQ, store each message with its seq, fan out through "
        "Redis. Needs CHAT_BROKER=rabbitmq and CHAT_SOCKETIO_MANAGER=redis. " + READS_CLUSTER,
    )
    worker.add_argument(
        "--ops-port",
        type=int,
        help="port of /healthz, /readyz and /metrics (CHAT_WORKER_OPS_PORT, 9100; 0: none)",
    )
    worker.set_defaults(run=_worker)

    migrate = commands.add_parser(
        "migrate",
        help="apply the database migrations (once, before servers and workers start)",
        description="Bring the database to the latest schema. " + READS_STORAGE,
    )
    migrate.set_defaults(run=_migrate)

    config = commands.add_parser(
        "config",
        help="print the effective configuration, secrets masked",
        description="Print every setting as CHAT_NAME=value, as this process would run "
        "with the current environment and .env file; secrets are masked.",
    )
    config.set_defaults(run=_config)

    prune = commands.add_parser(
        "prune",
        help="retention: erase the bodies of old messages (they stay as tombstones)",
        description="Erase the bodies of messages older than CHAT_RETENTION_DAYS days (or "
        "--older-than-days); they stay as tombstones so every room's seq keeps no gap. "
        "Run it from cron. " + READS_STORAGE,
    )
    prune.add_argument(
        "--older-than-days",
        type=int,
        help="age in days, at least 1 (default: CHAT_RETENTION_DAYS)",
    )
    prune.set_defaults(run=_prune)

    users = commands.add_parser(
        "users", help="administer user accounts", description="Administer user accounts."
    )
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = user_commands.add_parser(
        "create",
        help="create a user account",
        description="Create a user, with the same rules as registration. " + READS_STORAGE,
    )
    create.add_argument("username", help="3 to 32 of a-z 0-9 _ . -")
    create.add_argument(
        "--password",
        help="the password (8 to 128 characters); asked on the terminal when omitted",
    )
    create.add_argument("--display-name", help="the name shown to others (the username)")
    create.set_defaults(run=_users_create)

    ends_sessions = (
        " Servers see it through the database: tokens issued before are refused and "
        "sockets disconnected within CHAT_SESSION_RECHECK_SECONDS. " + READS_STORAGE
    )
    deactivate = user_commands.add_parser(
        "deactivate",
        help="stop an account: no login, its tokens and sockets end",
        description="Deactivate a user: logins are refused (401, as a wrong password) and "
        "every session ends; rooms and messages stay." + ends_sessions,
    )
    deactivate.add_argument("username", help="the user to deactivate")
    deactivate.set_defaults(run=_users_deactivate)
    reactivate = user_commands.add_parser(
        "reactivate",
        help="let a deactivated account log in again",
        description="Reactivate a deactivated user; their old tokens stay refused, they "
        "log in anew. " + READS_STORAGE,
    )
    reactivate.add_argument("username", help="the user to reactivate")
    reactivate.set_defaults(run=_users_reactivate)
    reset = user_commands.add_parser(
        "reset-password",
        help="give an account a new password; its sessions from before end",
        description="Set a user's password, with the same rules as registration." + ends_sessions,
    )
    reset.add_argument("username", help="the user whose password to reset")
    reset.add_argument(
        "--password",
        help="the new password (8 to 128 characters); asked on the terminal when omitted",
    )
    reset.set_defaults(run=_users_reset_password)

    rooms = commands.add_parser(
        "rooms", help="look at rooms", description="Look at the rooms of the service."
    )
    room_commands = rooms.add_subparsers(dest="rooms_command", required=True, metavar="ACTION")
    listing = room_commands.add_parser(
        "list",
        help="list rooms, most recently created first",
        description="List rooms with their kind, member count and last seq. " + READS_STORAGE,
    )
    listing.add_argument("--limit", type=int, default=100, help="rooms to list at most (100)")
    listing.set_defaults(run=_rooms_list)

    keys = commands.add_parser(
        "keys",
        help="administer the server API's keys",
        description="Create, list and revoke the API keys of the server API "
        "(docs/app-integration.md).",
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    key_create = key_commands.add_parser(
        "create",
        help="create a key; it is printed once, on stdout",
        description="Create an API key with the scopes named; only its hash is stored, so "
        "the key is printed now and never again. " + READS_STORAGE,
    )
    key_create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=[s.value for s in Scope],
        help="a scope the key holds (repeat for more)",
    )
    key_create.add_argument("--name", default="app", help="what the key is for (app)")
    key_create.set_defaults(run=_keys_create)
    key_list = key_commands.add_parser(
        "list",
        help="list the keys (never the keys themselves)",
        description="List every key, revoked ones too, oldest first. " + READS_STORAGE,
    )
    key_list.set_defaults(run=_keys_list)
    key_revoke = key_commands.add_parser(
        "revoke",
        help="revoke a key: refused at once on every node",
        description="Revoke the key with this id; every server checks keys in the database "
        "on each call, so it is refused from the next call on. " + READS_STORAGE,
    )
    key_revoke.add_argument("id", help="the key's id (see `chat keys list`)")
    key_revoke.set_defaults(run=_keys_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
