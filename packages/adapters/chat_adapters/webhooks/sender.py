"""POSTs webhook events with aiohttp, signed as Standard Webhooks describes."""

from __future__ import annotations

import time

import aiohttp
import orjson

from chat_adapters.webhooks.signing import secret_key, signature
from chat_domain.ports.webhooks import WebhookEndpoint, WebhookEvent, WebhookRejected, WebhookSender


def body_of(event: WebhookEvent) -> bytes:
    """The JSON body a receiver gets (docs/webhooks.md)."""
    return orjson.dumps(
        {"id": event.id, "type": event.type, "timestamp": event.timestamp, "data": event.data}
    )


class AiohttpWebhookSender(WebhookSender):
    """One shared client session; each POST bounded by ``timeout`` seconds in all."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, endpoint: WebhookEndpoint, event: WebhookEvent) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = body_of(event)
        # The attempt's time, not the event's: receivers refuse stale timestamps (replay
        # protection), and a retry may come long after the event.
        sent_at = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(sent_at),
            "webhook-signature": signature(secret_key(endpoint.secret), event.id, sent_at, body),
        }
        try:
            async with self._session.post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if not 200 <= response.status < 300:
                    raise WebhookRejected(f"status {response.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise WebhookRejected(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
