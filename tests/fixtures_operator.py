"""Pytest fixtures that run the real operator (``ponder-operator``) against the local cluster.

- ``crds`` (session): the ReasoningService CRD and kopf's peering CRDs, applied with kubectl;
- ``start_operator`` (per test): start operator processes; each is stopped afterwards.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components import LOG_FILES
from ponder_localstack.cluster import Cluster
from ponder_localstack.proc import Process, free_port, http_ok

REPO = Path(__file__).resolve().parents[1]
StartOperator = Callable[..., Process]


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    for path in ("crds/reasoningservices.ponder.dev.yaml", "crds/kopf-peering.yaml"):
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/reasoningservices.ponder.dev", "crd/clusterkopfpeerings.kopf.dev")
    # kopf peers meet in a ClusterKopfPeering that must exist before they start.
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps({
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
        "metadata": {"name": "ponder"}}))
    return cluster


@pytest.fixture
def start_operator(crds: Cluster, tmp_path: Path) -> Iterator[StartOperator]:
    started: list[Process] = []

    def start(*, standalone: bool = True, env: dict[str, str] | None = None) -> Process:
        port = free_port()
        log_path = tmp_path / f"operator-{len(started)}.log"
        LOG_FILES.append(log_path)
        process = Process(
            f"operator-{len(started)}",
            [sys.executable, "-m", "ponder_operator"],
            log_path,
            env={**crds.env(), "PONDER_HEALTH_PORT": str(port),
                 "PONDER_STANDALONE": "1" if standalone else "0", **(env or {})},
        ).start()
        started.append(process)
        process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60)
        return process

    yield start
    for process in started:
        process.stop()


def get_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def eventually(predicate: Callable[[], Any], timeout_seconds: float = 60,
               what: str = "condition") -> Any:
    """Poll until ``predicate`` returns a truthy value; return it."""
    deadline = time.monotonic() + timeout_seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the object may not exist yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not met within {timeout_seconds} s (last: {last!r})")
