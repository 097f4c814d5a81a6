"""Rate limits applied at the edge, where the key is only known here: the client's address.

Message sends are limited inside the send use case (one budget for REST and socket.io);
login and register are limited here per client address, register also per username;
login attempts per username and address are limited inside the login use case, which
clears them when a login succeeds.
"""

from __future__ import annotations

from quart import request

from chat_server.http import services


def client_address() -> str:
    """The caller's address: the peer, or behind ``CHAT_TRUSTED_PROXY_HOPS`` proxies the
    address the outermost trusted proxy saw (earlier X-Forwarded-For entries are the
    client's own claims and could be forged)."""
    hops = services().settings().trusted_proxy_hops
    if hops:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.remote_addr or "unknown"


async def throttle_auth(kind: str, username: str | None = None) -> None:
    """One attempt to log in or register: charged to the address and, given one, to the
    username (a login's attempts per username and address are counted by the use case)."""
    container = services()
    limiter = container.rate_limiter()
    await limiter.acquire(f"{kind}:{client_address()}", container.auth_address_rate())
    if username is not None:
        await limiter.acquire(f"{kind}:{username.strip().lower()}", container.login_rate())
