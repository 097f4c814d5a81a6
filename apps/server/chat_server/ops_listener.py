"""The operations endpoints on a listener of their own (``CHAT_OPS_PORT``).

/metrics tells anyone who can reach it how busy the node is and what it runs, and
/readyz makes it probe the database, the broker and Redis on every call. With
``CHAT_OPS_PORT`` set, they (and /healthz) are served only on that port, bound to
``CHAT_OPS_HOST`` (127.0.0.1 by default: the orchestrator's probes and the scraper
reach it, the public does not), and the public listener answers 404 for them.
"""

from __future__ import annotations

from quart import Quart

from chat_bootstrap.container import Container
from chat_server import ops
from chat_server.errors import register_error_handlers
from chat_server.http import OrjsonProvider


def create_ops_app(container: Container) -> Quart:
    app = Quart("chat_server.ops_listener", static_folder=None)
    app.extensions["chat.container"] = container
    app.json = OrjsonProvider(app)
    register_error_handlers(app)
    app.register_blueprint(ops.blueprint)
    return app
