"""HTTP hardening: CORS for allowed origins only, a strict Content-Security-Policy on the
web client, and request bodies always read before the answer.

CORS: a browser page from another origin may call the REST API only if its origin is
in ``CHAT_CORS_ORIGINS`` (the same list socket.io checks). With the list empty, only
the server's own origin (the web client at ``/``) can: no CORS header is ever sent.
Tokens travel in the Authorization header, never in cookies, so credentials are not
allowed cross-origin either.
"""

from __future__ import annotations

from quart import Quart, Response, request

# The web client loads only its own files and talks to its own origin (REST + websocket).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
PAGES_WITH_CSP = frozenset({"/"})
CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "600"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# On every answer, beside "Vary: Origin" (and CORS headers for allowed origins).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def harden(app: Quart, cors_origins: list[str]) -> None:
    """Install the hooks: the body is read first, the headers go on every answer."""

    @app.before_request
    async def read_body_first() -> None:
        # An answer given before the body was read (a 401 from the token check, a 404)
        # left the unread body on the keep-alive connection, and hypercorn dropped the
        # client's next request on it ("server disconnected"). Reading it here, bounded by
        # MAX_CONTENT_LENGTH (413 above), keeps the connection usable whatever the answer.
        if request.method in BODY_METHODS:
            await request.get_data(cache=True)

    install_security_headers(app, cors_origins)


def install_security_headers(app: Quart, cors_origins: list[str]) -> None:
    """Add the headers to every answer, errors included."""
    allowed = frozenset(cors_origins)
    any_origin = "*" in allowed

    @app.after_request
    async def security_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in SECURITY_HEADERS.items():
            headers.setdefault(name, value)
        if request.path in PAGES_WITH_CSP:
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        origin = request.headers.get("Origin")
        if origin and (any_origin or origin in allowed):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = "Retry-After"
            if request.method == "OPTIONS":
                headers["Access-Control-Allow-Methods"] = CORS_METHODS
                headers["Access-Control-Allow-Headers"] = CORS_HEADERS
                headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        # Answers differ by Origin: caches must not hand one origin's answer to another.
        response.vary.add("Origin")
        if response.status_code == 413:
            # The body was refused unread: the connection cannot carry another request.
            headers["Connection"] = "close"
        return response
