"""The closed loop for end-to-end tests: every part real, pods served by local processes.

A second local cluster (separate from the integration tests' session cluster) whose Triton
and router pods are run by ``ponder_localstack.runner.PodRunner`` on their own loopback
addresses; Prometheus discovers them from the runner's targets file; the operator scales
the Triton Deployment from what Prometheus reads. One stack per test module; each test
applies its own ReasoningServices (``apply_service``), deleted when it ends, pass or fail.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import LOG_FILES, require
from ponder_localstack.cluster import Cluster, NodeSpec
from ponder_localstack.proc import Process, free_port, http_ok
from ponder_localstack.prometheus import Prometheus, file_discovery_job
from ponder_localstack.runner import PodRunner
from ponder_localstack.triton import SimModelOptions, repository_configmap

REPO = Path(__file__).resolve().parents[2]
SIM_REPOSITORY, SIM_REPOSITORY_ITEMS = repository_configmap(
    "sim", [SimModelOptions(token_latency_ms=10.0, max_concurrency=4)])
"""The stand-in's model repository as a ConfigMap in ``default`` and the ``items`` that a
service's ``spec.model.repository.configMap`` lays it out with."""
NODES = (NodeSpec("gpu-h100-0", gpus=4), NodeSpec("gpu-l4-0", gpus=2, gpu_product="NVIDIA-L4"),
         NodeSpec("cpu-0", gpus=0))


@dataclass
class Loop:
    cluster: Cluster
    runner: PodRunner
    prometheus: Prometheus
    operator: Process

    def rsvc(self, name: str, namespace: str = "default") -> dict[str, Any]:
        out = self.cluster.kubectl("get", "rsvc", name, "-n", namespace, "-o", "json")
        got: dict[str, Any] = json.loads(out)
        return got

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for c in self.rsvc(name).get("status", {}).get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return {}

    def triton_replicas(self, name: str) -> int:
        out = self.cluster.kubectl("get", "deployment", f"{name}-triton", "-o", "json")
        return int(json.loads(out)["spec"].get("replicas") or 0)

    def router_url(self, timeout_seconds: float = 60) -> str:
        deadline = time.monotonic() + timeout_seconds
        while not self.runner.ready_ips("router"):
            if time.monotonic() > deadline:
                raise AssertionError("no router pod became ready")
            time.sleep(0.2)
        return f"http://{self.runner.ready_ips('router')[0]}:8080"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    state = tmp_path_factory.mktemp("loop")
    cluster = Cluster(state / "cluster",
                      runner_selector=("ponder.dev/component", ("triton", "router")))
    LOG_FILES.extend(cluster.logs_dir / f"{n}.log" for n in ("kube-apiserver", "kwok"))
    require(lambda: cluster.start(nodes=NODES))
    runner = PodRunner(cluster, state / "pods").start()
    prometheus = Prometheus(state / "prometheus", scrape_interval_seconds=1.0,
                            extra_scrape_configs=[file_discovery_job(runner.targets_file)])
    LOG_FILES.append(prometheus.state_dir / "prometheus.log")
    operator: Process | None = None
    try:
        require(prometheus.start)
        for path in ("crds/reasoningservices.ponder.dev.yaml", "crds/kopf-peering.yaml"):
            cluster.kubectl("apply", "--server-side", "-f", str(REPO / path))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                        "crd/reasoningservices.ponder.dev")
        cluster.kubectl("apply", "-n", "default", "-f", "-",
                        input_text=yaml.safe_dump(SIM_REPOSITORY))
        health = free_port()
        operator = Process("operator", [sys.executable, "-m", "ponder_operator"],
                           state / "operator.log", env={
                               **cluster.env(), "PONDER_STANDALONE": "1",
                               "PONDER_HEALTH_PORT": str(health),
                               "PONDER_PROMETHEUS_URL": prometheus.url})
        LOG_FILES.append(operator.log_path)
        operator.start().wait_until(lambda: http_ok(f"http://127.0.0.1:{health}/healthz"), 60)
        yield Loop(cluster, runner, prometheus, operator)
    finally:
        if operator is not None:
            operator.stop()
        runner.stop()
        prometheus.stop()
        cluster.stop()


ApplyService = Callable[[dict[str, Any]], str]


@pytest.fixture
def apply_service(loop: Loop) -> Iterator[ApplyService]:
    """Apply a ReasoningService manifest (returns its name); each is deleted after the test."""
    applied: list[tuple[str, str]] = []

    def apply(manifest: dict[str, Any]) -> str:
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        applied.append((name, namespace))
        loop.cluster.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
        return str(name)

    yield apply
    for name, namespace in reversed(applied):
        loop.cluster.kubectl("delete", "rsvc", name, "-n", namespace, "--ignore-not-found",
                             "--timeout=90s")
