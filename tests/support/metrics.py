"""A process's Prometheus metrics in end-to-end tests, read the way a scraper reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families


def parse(text: str) -> dict[str, float]:
    """Every sample, keyed ``name`` or ``name{label="value",...}`` (labels sorted)."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def scrape_url(url: str) -> dict[str, float]:
    """The samples at ``url``; {} if the endpoint does not answer (yet, or any more)."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            text = (await http.get(url)).text
    except httpx.HTTPError:
        return {}
    return parse(text)


async def scrape(base_url: str, client: httpx.AsyncClient | None = None) -> dict[str, float]:
    """The samples of a server's ``/metrics`` (which must answer)."""
    if client is None:
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as own:
            return await scrape(base_url, own)
    r = await client.get(f"{base_url}/metrics")
    assert r.status_code == 200, r.text
    return parse(r.text)


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
