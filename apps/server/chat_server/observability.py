"""Request ids and Prometheus metrics of a server node's HTTP side and sockets.

Every HTTP request gets an id: the caller's ``X-Request-ID`` if it is a sane token,
else a new one. It is put in the logging context (chat_bootstrap.logs), so every
log line written while serving the request carries it, and it is answered back as
``X-Request-ID``. One access line per request is logged: method, path (no query
string), status, duration. Bodies and headers are never logged, so neither are
passwords nor tokens.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import socketio
from prometheus_client import Counter, Gauge, Histogram
from quart import Quart, Response, g, request

from chat_bootstrap.logs import REQUEST_ID

log = logging.getLogger("chat.http")

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from a caller as its request id: short, and harmless in a log line.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Routes that did not match any rule share one label, so scanners cannot blow up series.
UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "chat_http_requests_total",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "chat_http_request_duration_seconds",
    "HTTP request latency, by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SOCKETS_CONNECTED = Gauge(
    "chat_sockets_connected", "socket.io clients connected to this node (namespace /)"
)


def request_id_from(header: str | None) -> str:
    """The caller's id when it is sane, otherwise a fresh one."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def connected_sockets(sio: socketio.AsyncServer) -> int:
    """Clients connected to this node: the manager's room ``None`` of namespace "/" holds
    every connected sid (python-socketio's base manager keeps it that way)."""
    namespaces = getattr(sio.manager, "rooms", {})
    return len(namespaces.get("/", {}).get(None, {}))


def instrument(app: Quart) -> None:
    """Install request ids, the access log and the HTTP metrics on ``app``."""

    @app.before_request
    async def start_request() -> None:
        g.request_started = time.perf_counter()
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        REQUEST_ID.set(g.request_id)

    @app.after_request
    async def finish_request(response: Response) -> Response:
        started: float = g.get("request_started", time.perf_counter())
        elapsed = time.perf_counter() - started
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        response.headers[REQUEST_ID_HEADER] = g.get("request_id") or REQUEST_ID.get()
        record_request(request.method, route, request.path, response.status_code, elapsed)
        return response


def record_request(method: str, route: str, path: str, status: int, elapsed: float) -> None:
    """The metrics and the access line of one answered request (Quart's and the send lane's)."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_SECONDS.labels(method, route).observe(elapsed)
    log.info("%s %s %d %.1fms", method, path, status, elapsed * 1000)


def export_socket_gauge(sio: socketio.AsyncServer) -> None:
    """The gauge reads the live count when scraped: no connect/disconnect bookkeeping."""
    SOCKETS_CONNECTED.set_function(lambda: connected_sockets(sio))
