"""Step-up load shape: add users step by step until a step breaks a limit (the knee).

Use beside the locustfile: ``-f loadtests/locustfile.py,loadtests/shape_step.py``.
Each step holds CHAT_LOCUST_STEP_SECONDS (default 30); it is measured after
CHAT_LOCUST_STEP_SETTLE s (default 5: the users of the step have logged in and the
workers' stats, sent every 3 s, have caught up). It starts at CHAT_LOCUST_STEP_USERS
(default 10), adds CHAT_LOCUST_STEP_ADD (default the same) per step up to
CHAT_LOCUST_STEP_MAX (default 200) users, spawning CHAT_LOCUST_SPAWN_RATE (default 10)
users/s, and stops after the first step that breaks a limit of ``run_verdict.Limits``.
The report names the highest step that met them, for the cluster and for each node.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from locust import LoadTestShape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.locust_support import run
from loadtests.run_verdict import Limits


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(f"CHAT_LOCUST_{name}", default))


class StepUp(LoadTestShape):
    """Users rise in steps; each step is a window of the report; a breach ends the test."""

    sampled = False  # the steps are the windows

    def __init__(self) -> None:
        super().__init__()
        self.first = int(_setting("STEP_USERS", 10))
        self.add = int(_setting("STEP_ADD", self.first))
        self.top = int(_setting("STEP_MAX", 200))
        self.seconds = _setting("STEP_SECONDS", 30)
        self.settle = min(_setting("STEP_SETTLE", 5), self.seconds / 2)
        self.rate = _setting("SPAWN_RATE", 10)
        self.step = 0
        self.marked = False

    def users(self, step: int) -> int:
        return self.first + step * self.add

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        step = int(elapsed // self.seconds)
        if step != self.step:
            if self.marked and self.runner is not None:
                window = run.close_window(
                    self.runner.environment, f"step {self.step + 1} ({self.users(self.step)} users)"
                )
                limits = Limits.from_options(self.runner.environment.parsed_options)
                if window is not None and window.cluster_breaches(limits):
                    return None  # the knee: the report names the step before this one
            self.step, self.marked = step, False
            if self.users(step) > self.top:
                return None
        if not self.marked and elapsed - step * self.seconds >= self.settle:
            if self.runner is not None:
                run.mark(self.runner.environment)
            self.marked = True
        return self.users(step), self.rate
