"""The ASGI app of a server node: Quart (REST, web client, ops) beside python-socketio."""

from __future__ import annotations

import socketio
from hypercorn.typing import ASGIFramework
from quart import Quart
from quart_schema import QuartSchema

from chat_bootstrap.container import Container
from chat_server import observability, ops, web
from chat_server import openapi as openapi_docs
from chat_server.admission import SessionAdmission
from chat_server.api import api
from chat_server.client_packets import guard_client_packets
from chat_server.errors import register_error_handlers
from chat_server.fast_send import FastSendRoute
from chat_server.http import ChatRequest, OrjsonProvider
from chat_server.outbound import OutboundBounds
from chat_server.realtime import register_socket_handlers
from chat_server.security import harden
from chat_server.seed_compat.rest import register_seed_routes
from chat_server.seed_compat.sockets import register_seed_socket_handlers


def create_quart_app(container: Container) -> Quart:
    settings = container.settings()
    app = Quart(__name__, static_folder=None)
    app.request_class = ChatRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["chat.container"] = container
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        # /docs is our own page on vendored Swagger UI (chat_server.openapi): no CDN.
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "Chat backend", "version": "1"},
        openapi_provider_class=openapi_docs.ChatOpenAPIProvider,
        security_schemes=openapi_docs.SECURITY_SCHEMES,
        tags=openapi_docs.TAGS,
    )
    # After QuartSchema, which installs its own JSON provider: our answers are plain dicts,
    # and orjson serialises them several times faster.
    app.json = OrjsonProvider(app)
    # QuartSchema also wraps make_response to turn models into dicts, walking every answer
    # through a new pydantic TypeAdapter; our views answer plain JSON-ready dicts already.
    app.make_response = app.make_response.__wrapped__  # type: ignore[attr-defined,method-assign]
    register_error_handlers(app)
    harden(app, settings.cors_origins)
    observability.instrument(app)
    app.register_blueprint(api)
    if settings.seed_compat != "off":  # the seed's routes: docs/seed-compat.md
        register_seed_routes(app)
    if settings.ops_port is None:  # else only on the ops listener (chat_server.ops_listener)
        app.register_blueprint(ops.blueprint)
    app.register_blueprint(openapi_docs.blueprint)
    app.register_blueprint(web.blueprint)
    return app


def create_app(container: Container) -> ASGIFramework:
    """socket.io answers under /socket.io/, everything else goes to Quart.

    In front of socket.io: the admission of sessions not logged in yet, and the bound on
    what each socket may have queued (docs/security.md).

    The container's lifecycle is owned by the caller (`chat serve`), not by ASGI
    lifespan, so that the server and the worker start and stop it the same way.
    """
    settings = container.settings()
    sio = container.socketio_server()
    if settings.seed_compat == "off":
        register_socket_handlers(sio, container)
    else:  # our events, and the seed's for sockets without our token
        register_seed_socket_handlers(sio, container)
    guard_client_packets(sio)
    observability.export_socket_gauge(sio)
    # Plain sends are answered in front of Quart (chat_server.fast_send), the rest by Quart.
    rest = FastSendRoute(create_quart_app(container), container)
    bounded = OutboundBounds(
        socketio.ASGIApp(sio, other_asgi_app=rest),
        sio,
        limit_bytes=settings.socket_send_buffer_bytes,
        timeout_s=settings.socket_send_timeout_seconds,
    )
    return SessionAdmission(
        bounded,
        sio,
        per_address=settings.socket_pending_per_address,
        max_pending=settings.socket_pending_max,
        pending_seconds=settings.socket_pending_seconds,
        trusted_proxy_hops=settings.trusted_proxy_hops,
    )
