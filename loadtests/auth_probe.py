"""Login under abuse, measured on a `chat serve` it starts itself (SQLite, embedded).

1. Timing: a wrong password for an existing user against an unknown username, so one
   can see that the two answers cost the same (argon2 runs for both).
2. Starvation: a burst of concurrent registrations from one address and, while it runs,
   one real user's login: how long that login waits, and what became of the burst.

    .venv/bin/python -m loadtests.auth_probe [--samples 40] [--burst 700] [--no-lane]

``--no-lane`` opens the registration lane to the whole burst (the behaviour before it):
the A/B of the lane on one machine.

Speed belongs here, not in the tests (they count verifications and queue places).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from loadtests.targets import CHAT, Process, free_port

PASSWORD = "correct horse battery"
# The per-address and per-username budgets would refuse the probe itself: raised, so
# what is measured is argon2 and the registration lane, not the rate limiter.
ENV = {
    "CHAT_RATE_AUTH_PER_ADDRESS_PER_MINUTE": "1000000",
    "CHAT_RATE_AUTH_PER_ADDRESS_BURST": "100000",
    "CHAT_RATE_LOGIN_PER_MINUTE": "1000000",
    "CHAT_RATE_LOGIN_BURST": "100000",
    "CHAT_LOG_LEVEL": "WARNING",
}


async def login_ms(http: httpx.AsyncClient, username: str, password: str) -> tuple[int, float]:
    started = time.perf_counter()
    r = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
    return r.status_code, (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered):6.1f} ms  p90 {p90:6.1f} ms  (n={len(ordered)})"


async def timing(http: httpx.AsyncClient, username: str, samples: int) -> None:
    wrong, unknown = [], []
    for _ in range(samples):  # interleaved, so both see the same machine
        status, ms = await login_ms(http, username, "not the password")
        assert status == 401, status
        wrong.append(ms)
        status, ms = await login_ms(http, f"nobody_{uuid.uuid4().hex[:8]}", PASSWORD)
        assert status == 401, status
        unknown.append(ms)
    print(f"wrong password, existing user: {summary(wrong)}")
    print(f"unknown username:              {summary(unknown)}")


async def starvation(http: httpx.AsyncClient, username: str, burst: int) -> None:
    tag = uuid.uuid4().hex[:6]

    first_created = asyncio.Event()

    async def register(i: int) -> tuple[int, float]:
        body = {"username": f"burst_{tag}_{i}", "password": PASSWORD}
        r = await http.post("/api/v1/auth/register", json=body)
        if r.status_code == 201:
            first_created.set()
        return r.status_code, time.perf_counter()

    started = time.perf_counter()
    registrations = [asyncio.create_task(register(i)) for i in range(burst)]
    # Once one account is made, the server has taken the burst in: its hashing is queued.
    await first_created.wait()
    status, ms = await login_ms(http, username, PASSWORD)
    answers = await asyncio.gather(*registrations)
    last = max(at for _, at in answers) - started
    counts = Counter(code for code, _ in answers)
    print(f"{burst} registrations at once: {dict(counts)}, all answered in {last:.2f} s")
    print(f"a real login meanwhile: {status} in {ms:.1f} ms")


async def probe(url: str, samples: int, burst: int) -> None:
    limits = httpx.Limits(max_connections=burst + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        username = f"probe_{uuid.uuid4().hex[:8]}"
        creds = {"username": username, "password": PASSWORD}
        assert (await http.post("/api/v1/auth/register", json=creds)).status_code == 201
        await login_ms(http, username, PASSWORD)  # warm: first connection, first query
        if samples:
            await timing(http, username, samples)
        await starvation(http, username, burst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--burst", type=int, default=700)
    parser.add_argument("--no-lane", action="store_true", help="admit every registration")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    env = dict(ENV)
    if args.no_lane:
        env["CHAT_REGISTRATION_CONCURRENCY"] = str(args.burst)
    workdir = Path(tempfile.mkdtemp(prefix="chat-auth-probe-"))
    port = free_port()
    server = Process(
        "server",
        [CHAT, "serve", "--host", "127.0.0.1", "--port", str(port)],
        workdir,
        env,
        url=f"http://127.0.0.1:{port}",
    ).start()
    try:
        server.wait_healthy()
        assert server.url is not None
        asyncio.run(probe(server.url, 0 if args.skip_timing else args.samples, args.burst))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
