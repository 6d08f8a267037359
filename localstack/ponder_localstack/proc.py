"""A started local process: free loopback ports, a log file, health waiting, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


class StartupError(RuntimeError):
    """A local component did not become healthy; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class Process:
    """One child process, its own process group, logging to ``log_path``."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_until(
        self, check: Callable[[], bool], timeout_seconds: float, what: str = "healthy"
    ) -> float:
        """Poll ``check`` until true; return seconds taken. Fails fast if the process exits."""
        started = time.monotonic()
        deadline = started + timeout_seconds
        while time.monotonic() < deadline:
            if not self.alive:
                raise StartupError(
                    f"{self.name} exited (code {self.popen and self.popen.returncode}) before "
                    f"it was {what}; log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return time.monotonic() - started
            time.sleep(0.1)
        raise StartupError(
            f"{self.name} was not {what} within {timeout_seconds:.0f} s; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after the timeout."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout_seconds)

    def kill(self) -> None:
        """SIGKILL the process group at once (fault-injection tests)."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def http_ok(url: str, timeout_seconds: float = 2.0, context: object | None = None) -> bool:
    """True when GET ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds, context=context) as resp:  # type: ignore[arg-type]
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False
