"""Redis clients for our own adapters (presence, rate limits)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

# A burst (every client of a node reconnecting, a shutdown disconnecting everyone) makes
# hundreds of concurrent calls: they queue for a connection instead of failing with
# MaxConnectionsError, as redis-py's default pool does past 100 connections.
MAX_CONNECTIONS = 64


def redis_client(
    url: str, *, wait_for_connection: float, socket_timeout: float | None = None
) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=wait_for_connection,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    return Redis.from_pool(pool)
