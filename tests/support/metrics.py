"""A running server's Prometheus metrics, read the way a scraper reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx


async def scrape(base_url: str, client: httpx.AsyncClient | None = None) -> dict[str, float]:
    """Every sample of ``/metrics``: ``name{labels}`` -> value (comments left out)."""
    if client is None:
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as own:
            return await scrape(base_url, own)
    r = await client.get(f"{base_url}/metrics")
    assert r.status_code == 200, r.text
    samples: dict[str, float] = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def wait_for_sample(
    base_url: str, name: str, accept: Callable[[float], bool], timeout: float = 30.0
) -> dict[str, float]:
    """Scrape until ``accept(value)`` holds for sample ``name``; the last scrape."""
    async with asyncio.timeout(timeout):
        while True:
            samples = await scrape(base_url)
            if accept(samples.get(name, 0.0)):
                return samples
            await asyncio.sleep(0.2)  # a scraper's interval: there is no event to wait on
