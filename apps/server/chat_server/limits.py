"""Rate limits applied at the edge, where the key is only known here: the client's address.

Message sends are limited inside the send use case (one budget for REST and socket.io);
login and register are limited here, per client address and per username, against
password guessing and account spraying.
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


async def throttle_auth(kind: str, username: str) -> None:
    """One attempt to log in or register: charged to the address and to the username."""
    container = services()
    limiter = container.rate_limiter()
    await limiter.acquire(f"{kind}:{client_address()}", container.auth_address_rate())
    await limiter.acquire(f"{kind}:{username.strip().lower()}", container.login_rate())
