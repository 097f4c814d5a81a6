"""Real `chat` processes on free ports, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CHAT = str(Path(sys.executable).with_name("chat"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without any CHAT_* of the developer's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    # A process that crashes (a signal, not an exception) leaves its stacks in its log.
    env["PYTHONFAULTHANDLER"] = "1"
    env.update(extra)
    return env


@dataclass
class ChatProcess:
    """One `chat serve` or `chat worker` process, its log in a file under ``workdir``."""

    args: list[str]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    name: str = "chat"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> ChatProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [CHAT, *self.args],
            cwd=self.workdir,
            env=clean_env(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait_ready and self.port is not None:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling a process that is starting: there is no event to wait on
        raise TimeoutError(f"{self.name} not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait for a clean exit (SIGKILL if it does not come); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash of a process, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def chat_serve(
    workdir: Path, env: Mapping[str, str] | None = None, name: str = "server"
) -> ChatProcess:
    port = free_port()
    return ChatProcess(
        ["serve", "--host", "127.0.0.1", "--port", str(port)],
        workdir,
        dict(env or {}),
        port=port,
        name=name,
    )


def chat_worker(workdir: Path, env: Mapping[str, str], name: str = "worker") -> ChatProcess:
    return ChatProcess(["worker"], workdir, dict(env), name=name)
