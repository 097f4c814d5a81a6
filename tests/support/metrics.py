"""Reading a process's Prometheus endpoint in end-to-end tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def scrape(url: str) -> dict[str, float]:
    """Every sample at ``url``, keyed ``name`` or ``name{label="value",...}``; {} if the
    endpoint does not answer (yet, or any more)."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            text = (await http.get(url)).text
    except httpx.HTTPError:
        return {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
