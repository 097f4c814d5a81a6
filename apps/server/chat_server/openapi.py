"""The OpenAPI document (/openapi.json) and its browser (/docs), both served offline.

quart-schema builds the document from the request models of schemas.py; this module
adds what it cannot infer from the views: a tag per blueprint, the success answer of
each operation (models in answers.py), the contract's error answers, and the bearer
security scheme (set by ``chat_server.http.authenticated``).

/docs is our own small page that loads the Swagger UI vendored from the npm package
swagger-ui-dist (static/vendor/swagger-ui/), not quart-schema's page, whose scripts
come from a CDN and which has an inline script: that breaks offline, on a LAN without
internet, and under a strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, Response, send_from_directory
from quart_schema import APIKeySecurityScheme, HttpSecurityScheme, OpenAPIProvider, Tag
from quart_schema.openapi import SecuritySchemeBase
from werkzeug.routing import Rule

from chat_server import answers
from chat_server.web import STATIC_DIR

BEARER = "bearerAuth"
SECURITY_SCHEMES: dict[str, SecuritySchemeBase | dict[Any, Any]] = {
    BEARER: HttpSecurityScheme(scheme="bearer", bearer_format="JWT"),
    # The server API's keys (chat_server.api.server), either way.
    "apiKeyBearer": HttpSecurityScheme(scheme="bearer", bearer_format="API key"),
    "apiKeyHeader": APIKeySecurityScheme(name="X-API-Key", in_="header"),
}

# Tag of each blueprint (by its registered, dotted name), and the tags' descriptions.
TAG_OF_BLUEPRINT = {
    "api.auth": "auth",
    "api.users": "users",
    "api.rooms": "rooms",
    "api.messages": "messages",
    "api.server": "server",
    "ops": "operations",
    "docs": "operations",
    "web": "web client",
    "seed": "seed compatibility",
    "seed_rooms": "seed compatibility",
}
TAGS: list[Tag | dict[Any, Any]] = [
    Tag(name="auth", description="Register and log in (the login answers the bearer token)"),
    Tag(name="users", description="The caller, the user directory, and the caller's blocks"),
    Tag(name="rooms", description="Rooms, members, read markers and receipts"),
    Tag(name="messages", description="Send (202: accepted by the broker), page, edit, delete"),
    Tag(
        name="server",
        description="The app's backend, with an API key: users, rooms, members, messages "
        "(docs/app-integration.md)",
    ),
    Tag(name="operations", description="Liveness, readiness, metrics, this document"),
    Tag(name="web client", description="The browser chat client"),
    Tag(
        name="seed compatibility",
        description="The API of the system this one grew from, with CHAT_SEED_COMPAT on "
        "(docs/seed-compat.md)",
    ),
]

# Success answers per endpoint: a model, None for an empty body, or a media type.
Answer = type[BaseModel] | str | None
SUCCESS: dict[str, dict[int, Answer]] = {
    "api.auth.register": {201: answers.UserAnswer},
    "api.auth.login": {200: answers.LoginAnswer},
    "api.users.me": {200: answers.UserAnswer},
    "api.users.search": {200: answers.UsersAnswer},
    "api.users.blocks": {200: answers.BlocksAnswer},
    "api.users.block": {201: answers.BlockAnswer, 200: answers.BlockAnswer},
    "api.users.unblock": {204: None},
    "api.rooms.create_room": {201: answers.RoomAnswer, 200: answers.RoomAnswer},
    "api.rooms.list_rooms": {200: answers.RoomsAnswer},
    "api.rooms.get_room": {200: answers.RoomAnswer},
    "api.rooms.add_member": {201: answers.MemberAnswer, 200: answers.MemberAnswer},
    "api.rooms.remove_member": {204: None},
    "api.rooms.transfer_ownership": {200: answers.RoomAnswer},
    "api.rooms.mark_read": {204: None},
    "api.rooms.receipts": {200: answers.ReceiptsAnswer},
    "api.messages.send": {202: answers.MessageAnswer},
    "api.messages.history": {200: answers.MessagesPage},
    "api.messages.edit": {200: answers.MessageAnswer},
    "api.messages.delete": {204: None},
    "api.server.upsert_user": {201: answers.UserAnswer, 200: answers.UserAnswer},
    "api.server.deactivate_user": {200: answers.UserAnswer},
    "api.server.create_room": {201: answers.RoomAnswer},
    "api.server.set_members": {200: answers.RoomAnswer},
    "api.server.post_message": {202: answers.MessageAnswer},
    "api.server.history": {200: answers.MessagesPage},
    "ops.healthz": {200: answers.HealthAnswer},
    "ops.readyz": {200: answers.ReadinessAnswer, 503: answers.ReadinessAnswer},
    "ops.metrics": {200: "text/plain"},
    "web.index": {200: "text/html"},
    "openapi": {200: "application/json"},
    "docs.docs": {200: "text/html"},
    "seed.chat_token": {200: answers.ChatTokenAnswer},
    "seed.chat_message": {200: None},
    "seed.chat_clients": {200: answers.SeedClientsAnswer},
    "seed_rooms.join": {200: answers.RoomAnswer},
}
SUCCESS_NOTES = {
    ("seed.chat_message", 200): "Accepted by the broker (our 202), answered as the seed did",
    ("api.rooms.create_room", 200): "The existing direct room of the pair",
    ("api.rooms.add_member", 200): "Already a member",
    ("api.rooms.remove_member", 204): "Left the room, or removed the member (owner only)",
    ("api.rooms.transfer_ownership", 200): "The room, the named member now its owner",
    ("api.users.block", 200): "Already blocked: the first block stays",
    ("api.users.unblock", 204): "Not blocked (any more)",
    ("api.rooms.mark_read", 204): "The read marker moved (never backwards)",
    ("api.messages.delete", 204): "The message is now a tombstone",
    ("api.server.upsert_user", 200): "The user exists already (as stored)",
}
# Errors some operations answer beyond those every operation of their kind does.
EXTRA_ERRORS: dict[str, dict[int | str, str]] = {
    "api.auth.register": {
        409: "The username is taken (case-insensitive)",
        403: "Accounts are off: the app vouches for users (CHAT_AUTH_MODE=app)",
    },
    "api.auth.login": {
        401: "Bad credentials",
        403: "Accounts are off: the app vouches for users (CHAT_AUTH_MODE=app)",
    },
    "api.rooms.remove_member": {
        403: "Only the owner removes others",
        409: "The owner leaves only as the last member, or after handing the room over",
    },
    "api.rooms.add_member": {
        403: "Not allowed: a direct room, a user who blocks the caller, or one the owner "
        "removed (only the owner adds them back)"
    },
    "api.rooms.create_room": {403: "A named user blocks the caller"},
    "api.rooms.transfer_ownership": {
        403: "Only the owner hands a room over (a direct room has none)",
        409: "The room changed hands meanwhile",
    },
    "api.users.block": {422: "The caller cannot block themselves"},
    "api.messages.edit": {403: "Only the sender edits"},
    "api.messages.delete": {403: "Only the sender or the room owner deletes"},
    "api.messages.send": {503: "The broker did not confirm: nothing was accepted"},
    "seed.chat_message": {400: "invalid session token"},
    "seed.chat_token": {
        401: "CHAT_SEED_COMPAT=api-key and no valid X-API-Key header",
        403: "A server API key without users:write",
    },
    "seed.chat_clients": {
        401: "CHAT_SEED_COMPAT=api-key and no valid X-API-Key header",
        403: "A server API key without messages:read",
    },
    "api.server.create_room": {403: "A named user blocks the owner"},
    "api.server.set_members": {403: "A direct room's members are fixed"},
    "api.server.post_message": {503: "The broker did not confirm: nothing was accepted"},
}
# Every server API call needs its scope.
for _endpoint in (
    "api.server.upsert_user",
    "api.server.deactivate_user",
    "api.server.create_room",
    "api.server.set_members",
    "api.server.post_message",
    "api.server.history",
):
    EXTRA_ERRORS.setdefault(_endpoint, {}).setdefault(
        403, "The API key lacks the scope this call needs"
    )
ERROR_NOTES: dict[int | str, str] = {
    400: "Malformed JSON",
    401: "No, invalid or expired bearer token (server API: no, unknown or revoked API key)",
    404: "Not found (also a room the caller is not a member of)",
    413: "Body too large",
    422: "Well-formed JSON that fails validation",
    429: "Rate limited: try again after Retry-After seconds",
    503: "A backing service (database, broker) does not answer: nothing was done",
}
# The operations a rate limit guards (chat_server.limits and the send use case).
RATE_LIMITED = {
    "api.auth.register",
    "api.auth.login",
    "api.messages.send",
    # Per API key (CHAT_RATE_SERVER_API_*).
    "api.server.upsert_user",
    "api.server.deactivate_user",
    "api.server.create_room",
    "api.server.set_members",
    "api.server.post_message",
    "api.server.history",
}
# Stable operation ids, named for what the call does: clients generate code from them, so
# they must not change when a view function is renamed. tests/docs checks every route has one.
OPERATION_IDS = {
    "api.auth.register": "registerUser",
    "api.auth.login": "logIn",
    "api.users.me": "getCurrentUser",
    "api.users.search": "searchUsers",
    "api.users.blocks": "listBlocks",
    "api.users.block": "blockUser",
    "api.users.unblock": "unblockUser",
    "api.rooms.create_room": "createRoom",
    "api.rooms.list_rooms": "listRooms",
    "api.rooms.get_room": "getRoom",
    "api.rooms.add_member": "addMember",
    "api.rooms.remove_member": "removeMember",
    "api.rooms.transfer_ownership": "transferOwnership",
    "api.rooms.mark_read": "markRead",
    "api.rooms.receipts": "listReceipts",
    "api.messages.send": "sendMessage",
    "api.messages.history": "listMessages",
    "api.messages.edit": "editMessage",
    "api.messages.delete": "deleteMessage",
    "api.server.upsert_user": "serverUpsertUser",
    "api.server.deactivate_user": "serverDeactivateUser",
    "api.server.create_room": "serverCreateRoom",
    "api.server.set_members": "serverSetRoomMembers",
    "api.server.post_message": "serverPostMessage",
    "api.server.history": "serverListMessages",
    "ops.healthz": "getHealth",
    "ops.readyz": "getReadiness",
    "ops.metrics": "getMetrics",
    "web.index": "getWebClient",
    "openapi": "getOpenAPIDocument",
    "docs.docs": "getAPIBrowser",
    "seed.chat_token": "issueSeedChatToken",
    "seed.chat_message": "sendSeedChatMessage",
    "seed.chat_clients": "listSeedRoomClients",
    "seed_rooms.join": "joinSeedRoom",
}


class ChatOpenAPIProvider(OpenAPIProvider):
    """quart-schema's generator plus tags, answers, errors; /openapi.json itself included."""

    def generate_rules(self) -> Iterable[Rule]:
        for rule in super().generate_rules():
            if rule.endpoint != "static" and not rule.endpoint.endswith(".static"):
                yield rule
        # quart-schema hides its own route; the contract lists it, so the document does too.
        yield from (r for r in self._app.url_map.iter_rules() if r.endpoint == "openapi")

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        blueprint = rule.endpoint.rpartition(".")[0]
        for path_item in paths.values():
            for method, operation in path_item.items():
                operation = dict(operation)
                operation["tags"] = [TAG_OF_BLUEPRINT.get(blueprint, "operations")]
                if rule.endpoint in OPERATION_IDS:
                    operation["operationId"] = OPERATION_IDS[rule.endpoint]
                responses = dict(operation.get("responses", {}))
                for status, answer in SUCCESS.get(rule.endpoint, {}).items():
                    responses[str(status)] = self._answer(rule.endpoint, status, answer, components)
                for error_status, note in self._errors(rule, operation).items():
                    responses.setdefault(str(error_status), self._error(note, components))
                operation["responses"] = responses
                path_item[method] = operation
        return paths, components

    def _answer(
        self, endpoint: str, status: int, answer: Answer, components: dict[str, Any]
    ) -> dict[str, Any]:
        note = SUCCESS_NOTES.get((endpoint, status))
        if answer is None:
            return {"description": note or "No content"}
        if isinstance(answer, str):
            return {"description": note or "OK", "content": {answer: {"schema": {}}}}
        response, definitions = self.build_response_object(answer, None)
        components.update(definitions)
        if note:
            response["description"] = note
        return response

    def _error(self, note: str, components: dict[str, Any]) -> dict[str, Any]:
        response, definitions = self.build_response_object(answers.ErrorAnswer, None)
        components.update(definitions)
        response["description"] = note
        return response

    def _errors(self, rule: Rule, operation: dict[str, Any]) -> dict[int | str, str]:
        if not rule.rule.startswith("/api/"):
            return dict(EXTRA_ERRORS.get(rule.endpoint, {}))
        errors: dict[int | str, str] = {}
        if operation.get("security"):
            errors[401] = ERROR_NOTES[401]
        if rule.arguments:
            errors[404] = ERROR_NOTES[404]
        if "requestBody" in operation:
            errors.update({s: ERROR_NOTES[s] for s in (400, 413, 422)})
        if any(p.get("in") == "query" for p in operation.get("parameters", [])):
            errors[422] = ERROR_NOTES[422]
        if rule.endpoint in RATE_LIMITED:
            errors[429] = ERROR_NOTES[429]
        # Every API call reads the database, and a send also needs the broker.
        errors[503] = ERROR_NOTES[503]
        errors.update(EXTRA_ERRORS.get(rule.endpoint, {}))
        errors["default"] = "Any other error, same shape (a 500 never shows a trace)"
        return errors


blueprint = Blueprint("docs", __name__)


@blueprint.get("/docs")
async def docs() -> Response:
    """Swagger UI over /openapi.json, from vendored files (works offline, no inline script)."""
    return await send_from_directory(STATIC_DIR, "docs.html")
