"""REST API v1: thin views that parse, authenticate, call a use case and answer."""

from __future__ import annotations

from quart import Blueprint

from chat_server.api import auth, messages, rooms, server, users

api = Blueprint("api", __name__, url_prefix="/api/v1")
for module in (auth, users, rooms, messages, server):
    api.register_blueprint(module.blueprint)
