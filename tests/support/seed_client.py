"""The seed's own client for end-to-end tests: Node.js running socket.io-client 4.x (the
official JavaScript client) from tests/seed_client/, driven line by line (driver.js)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import in_ci

SEED_CLIENT_DIR = Path(__file__).resolve().parents[1] / "seed_client"
DRIVER = SEED_CLIENT_DIR / "driver.js"


def install_seed_client() -> None:
    """``npm ci`` from the committed lock file, once (node_modules is not committed).

    Without Node.js and npm the tests skip with a message on a laptop, and fail in CI."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if in_ci():
            pytest.fail("the seed-compat tests need Node.js 18+ and npm in CI")
        pytest.skip("Node.js and npm are needed: run scripts/install-system-deps as root")
    if (SEED_CLIENT_DIR / "node_modules" / "socket.io-client").is_dir():
        return
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(SEED_CLIENT_DIR)],
        check=True,
        capture_output=True,
        timeout=300,
    )


class SeedClient:
    """One seed client process: one socket, and HTTP through Node's fetch."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls) -> SeedClient:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            cwd=SEED_CLIENT_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        async for line in self._process.stdout:
            async with self._changed:
                self.lines.append(json.loads(line))
                self._changed.notify_all()

    async def _command(self, **command: Any) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command).encode() + b"\n")
        await self._process.stdin.drain()

    async def wait_line(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [line for line in self.lines if predicate(line)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: bool(found())), timeout)
        return found()[0]

    async def connect(self, url: str) -> None:
        await self._command(op="connect", url=url)
        line = await self.wait_line(lambda x: x["op"] in ("connected", "connect_error"))
        assert line["op"] == "connected", line

    async def emit(self, event: str, data: Any) -> None:
        await self._command(op="emit", event=event, data=data)

    async def wait_event(
        self, event: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 10.0
    ) -> Any:
        line = await self.wait_line(
            lambda x: x["op"] == "event" and x["event"] == event and predicate(x["data"]),
            timeout,
        )
        return line["data"]

    def events(self, event: str) -> list[Any]:
        return [x["data"] for x in self.lines if x["op"] == "event" and x["event"] == event]

    async def http(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """One request at a time: the answer is the next "http" line."""
        before = sum(1 for x in self.lines if x["op"] in ("http", "error"))
        await self._command(op="http", method=method, url=url, body=body, headers=headers or {})

        def answered() -> bool:
            return sum(1 for x in self.lines if x["op"] in ("http", "error")) > before

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(answered), 10.0)
        line = [x for x in self.lines if x["op"] in ("http", "error")][before]
        assert line["op"] == "http", line
        return line["status"], line["text"]

    async def close(self) -> None:
        if self._process.returncode is None:
            await self._command(op="close")
            try:
                await asyncio.wait_for(self._process.wait(), 5.0)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._reader.cancel()
