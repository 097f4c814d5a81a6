"""docs/asyncapi.yaml describes exactly the socket.io events the code has.

Client events are read from the handlers a server node registers; server events from
every place in packages/ and apps/ that hands an event name to the notifier (or emits on
the socket.io server directly). An event added, renamed or removed without its
description fails here, and so does a description of an event the code no longer has.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import socketio
import yaml

from chat_bootstrap.container import build_container
from chat_bootstrap.settings import Settings
from chat_server.app import create_app

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"
SOURCES = [ROOT / "packages", ROOT / "apps"]
# Socket.IO's own lifecycle events, which are not messages of the API.
LIFECYCLE = {"connect", "disconnect", "connect_error"}
# Calls that take an event name, and the position of that name among their arguments.
# (SeedEvent: an event as the seed's clients get it, chat_server.seed_compat.sockets.)
EMITTING_CALLS = {"emit_to_users": 1, "Notification": 1, "emit": 0, "SeedEvent": 0}


def _described(action: str) -> set[str]:
    document = yaml.safe_load(ASYNCAPI.read_text())
    messages = document["channels"]["root"]["messages"]
    names = set()
    for operation in document["operations"].values():
        if operation["action"] != action:
            continue
        for ref in operation["messages"]:
            names.add(messages[ref["$ref"].rsplit("/", 1)[-1]]["name"])
    return names


def _module_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        if isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _emitted_event_names() -> set[str]:
    """Every event name passed to an emitting call, as a literal or a module constant."""
    trees = [
        ast.parse(path.read_text())
        for source in SOURCES
        for path in source.rglob("*.py")
        if ".venv" not in path.parts
    ]
    constants: dict[str, str] = {}
    for tree in trees:
        constants.update(_module_constants(tree))
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called not in EMITTING_CALLS:
                continue
            position = EMITTING_CALLS[called]
            argument: ast.expr | None = None
            if len(node.args) > position:
                argument = node.args[position]
            for keyword in node.keywords:
                if keyword.arg == "event":
                    argument = keyword.value
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                names.add(argument.value)
            elif isinstance(argument, ast.Name) and argument.id in constants:
                names.add(constants[argument.id])
            # Anything else passes an event through (a variable): its origin is counted.
    return names


def _registered_client_events(tmp_path: Path) -> set[str]:
    # The default server, and one serving the seed's clients too (CHAT_SEED_COMPAT).
    return _client_events(tmp_path, "off") | _client_events(tmp_path, "open")


def _client_events(tmp_path: Path, seed_compat: str) -> set[str]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/chat.db",
        secret_key="x" * 48,  # type: ignore[arg-type]
        seed_compat=seed_compat,  # type: ignore[arg-type]
    )
    container = build_container(settings, role="server")
    # A server sets its JSON module on python-socketio's Packet class, for every client and
    # server of this process: put back the default so later tests' clients are unaffected.
    default_json = socketio.packet.Packet.json
    try:
        create_app(container)
        sio: Any = container.socketio_server()
    finally:
        socketio.packet.Packet.json = default_json
    names = set(sio.handlers.get("/", {}))
    for namespace in getattr(sio, "namespace_handlers", {}).values():
        names |= {name[3:] for name in dir(namespace) if name.startswith("on_")}  # on_<event>
        names |= set(getattr(namespace, "EVENTS", {}))  # an event table (ChatNamespace)
        names |= set(getattr(namespace, "SEED_EVENTS", ()))  # the seed's (seed compat)
    return names - LIFECYCLE


def test_every_client_event_the_server_handles_is_described(tmp_path: Path) -> None:
    handled = _registered_client_events(tmp_path)
    assert handled, "found no socket.io handler: has the way handlers are registered changed?"
    described = _described("receive")
    assert handled - described == set(), "handled but not described in docs/asyncapi.yaml"
    assert described - handled == set(), "described in docs/asyncapi.yaml but not handled"


def test_every_event_the_code_emits_is_described() -> None:
    emitted = _emitted_event_names()
    assert "message:new" in emitted, "found no emitted event: has the notifier call changed?"
    described = _described("send")
    assert emitted - described == set(), "emitted but not described in docs/asyncapi.yaml"
    assert described - emitted == set(), "described in docs/asyncapi.yaml but never emitted"


@pytest.mark.parametrize("action", ["send", "receive"])
def test_every_operation_names_a_message_of_the_channel(action: str) -> None:
    assert _described(action), f"no {action} operation in docs/asyncapi.yaml"
