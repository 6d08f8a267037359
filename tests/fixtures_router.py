"""Pytest fixtures that run the real router (``ponder-router``) as its own process.

``start_router_process(config)`` writes the config file, starts the console script on a
free loopback port and waits for ``/healthz``; every router is stopped afterwards. Its
log file joins ``LOG_FILES`` so that a failing test shows it, and so that the log audit
can read it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from components import LOG_FILES
from ponder_localstack.proc import Process, free_port, http_ok


@dataclass
class RouterProcess:
    """A ``ponder-router`` process on ``url``."""

    process: Process
    url: str
    config_path: Path

    @property
    def pid(self) -> int:
        assert self.process.popen is not None
        return self.process.popen.pid

    def rss_bytes(self) -> int:
        """Resident memory of the router process, from ``/proc``."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match, "no VmRSS in /proc status"
        return int(match.group(1)) * 1024

    def metrics(self) -> dict[str, float]:
        """The router's Prometheus samples, ``name{labels}`` -> value."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line and not line.startswith("#")}  # fmt: skip

    def metric_sum(self, name: str) -> float:
        """The sum of every series of ``name`` (all label sets)."""
        return sum(v for k, v in self.metrics().items() if k.split("{")[0] == name)


StartRouterProcess = Callable[..., RouterProcess]


def router_argv() -> list[str]:
    script = Path(sys.executable).with_name("ponder-router")
    return [str(script)] if script.exists() else [shutil.which("ponder-router") or "ponder-router"]


@pytest.fixture
def start_router_process(tmp_path: Path) -> Iterator[StartRouterProcess]:
    """Start ``ponder-router`` processes from config dicts; all stopped afterwards."""
    started: list[RouterProcess] = []

    def start(config: dict[str, Any], *, log_level: str = "info",
              env: dict[str, str] | None = None) -> RouterProcess:  # fmt: skip
        name = f"router-{len(started)}"
        config_path = tmp_path / f"{name}.json"
        config_path.write_text(json.dumps(config))
        port = free_port()
        process = Process(name, router_argv(), tmp_path / f"{name}.log", env={
            "PONDER_ROUTER_CONFIG": str(config_path), "PONDER_ROUTER_PORT": str(port),
            "PONDER_ROUTER_LOG_LEVEL": log_level, **(env or {})})  # fmt: skip
        LOG_FILES.append(process.log_path)
        router = RouterProcess(process, f"http://127.0.0.1:{port}", config_path)
        started.append(router)
        process.start().wait_until(lambda: http_ok(router.url + "/healthz"), 30)
        return router

    yield start
    for router in started:
        router.process.stop()
