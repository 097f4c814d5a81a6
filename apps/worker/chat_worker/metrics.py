"""Worker metrics (in embedded mode they appear on the server's /metrics too)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES_STORED = Counter(
    "chat_messages_stored_total", "Messages stored and fanned out by a worker"
)
MESSAGES_FAILED = Counter(
    "chat_messages_store_failures_total", "Attempts to store a message that raised (it is retried)"
)
CONSUME_SECONDS = Histogram(
    "chat_broker_consume_seconds",
    "From a message's acceptance to its storage and fan-out",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
