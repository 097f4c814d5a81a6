"""Soak load shape: ramp to a steady load and hold it, measured in windows.

Use beside the locustfile: ``-f loadtests/locustfile.py,loadtests/shape_soak.py``.
CHAT_LOCUST_SOAK_USERS (default 50) users, spawned at CHAT_LOCUST_SPAWN_RATE (default 10)
per second, held for CHAT_LOCUST_SOAK_SECONDS (default 600). The report has a row per
CHAT_LOCUST_WINDOW s (default 10): a throughput or p99 that drifts over the windows at the
same load is a leak or a queue that grows.
"""

from __future__ import annotations

import os

from locust import LoadTestShape


class Soak(LoadTestShape):
    sampled = True  # windows every CHAT_LOCUST_WINDOW s, as a plain run

    def __init__(self) -> None:
        super().__init__()
        self.users = int(os.environ.get("CHAT_LOCUST_SOAK_USERS", "50"))
        self.seconds = float(os.environ.get("CHAT_LOCUST_SOAK_SECONDS", "600"))
        self.rate = float(os.environ.get("CHAT_LOCUST_SPAWN_RATE", "10"))

    def tick(self) -> tuple[int, float] | None:
        if self.get_run_time() > self.seconds:
            return None
        return self.users, self.rate
