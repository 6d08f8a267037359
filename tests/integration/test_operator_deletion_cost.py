"""A scale-down removes the idlest Triton pod (issue 20, row 9), on the real control plane.

The operator reads each Triton pod's requests from a real Prometheus and writes them into
the pod's ``controller.kubernetes.io/pod-deletion-cost``; the real ReplicaSet controller
then deletes the pod with the lowest cost. The pods are KWOK's (no Triton runs), so each
pod's ``vllm:`` series comes from a small exporter per pod, scraped with the labels the
chart's PodMonitor gives a Triton pod (``namespace``, ``pod``, ``ponder_service``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fixtures_operator import StartOperator, eventually, get_json
from ponder_localstack.cluster import Cluster
from ponder_localstack.proc import LOOPBACK
from ponder_localstack.prometheus import Prometheus
from ponder_operator.policy.deletion_cost import DELETION_COST_ANNOTATION
from test_operator_reconcile import apply, service

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


class PodExporter:
    """One KWOK pod's stand-in metrics endpoint: its engine's running requests, in the text
    format Triton writes (prometheus_client would escape the colon of ``vllm:``)."""

    def __init__(self) -> None:
        self.running = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (f'vllm:num_requests_running{{model="qwen",version="1"}} '
                        f"{exporter.running}\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.target = f"{LOOPBACK}:{self.server.server_address[1]}"


@pytest.fixture
def exporters() -> Iterator[Callable[[], PodExporter]]:
    started: list[PodExporter] = []

    def start() -> PodExporter:
        started.append(PodExporter())
        return started[-1]

    yield start
    for exporter in started:
        exporter.server.shutdown()


def costs(cluster: Cluster, namespace: str, selector: str) -> dict[str, str | None]:
    pods = get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
    return {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
        DELETION_COST_ANNOTATION) for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_each_triton_pod_gets_its_load_as_deletion_cost_and_a_scale_down_removes_the_idlest(
    cluster: Cluster, namespace: str, start_operator: StartOperator,
    prometheus_factory: Callable[..., Prometheus], exporters: Callable[[], PodExporter],
) -> None:
    prometheus = prometheus_factory({})
    start_operator(env={"PONDER_PROMETHEUS_URL": prometheus.url})
    body = service("math", replicas=2)
    body["spec"]["scaling"]["intervalSeconds"] = 1
    apply(cluster, namespace, body)
    selector = eventually(lambda: get_json(cluster, "rsvc", "math", "-n", namespace)
                          ["status"].get("selector"), what="the Triton selector")
    names = eventually(lambda: sorted(costs(cluster, namespace, selector))
                       if len(costs(cluster, namespace, selector)) == 2 else None,
                       what="two Triton pods")
    busy, idle = names
    pods = {name: exporters() for name in names}
    prometheus.set_jobs({}, [{"job_name": f"triton-{i}", "static_configs": [{
        "targets": [pods[name].target],
        "labels": {"namespace": namespace, "pod": name, "ponder_service": "math"}}]}
        for i, name in enumerate(names)])

    pods[busy].running = 6
    pods[idle].running = 0
    assert eventually(lambda: costs(cluster, namespace, selector) == {busy: "6", idle: None},
                      what="the busy pod's cost")

    # The load moves: the annotations follow (a factor of two or to and from idle).
    pods[busy].running = 0
    pods[idle].running = 9
    busy, idle = idle, busy
    assert eventually(lambda: costs(cluster, namespace, selector) == {busy: "9", idle: "0"},
                      what="the costs after the load moved")

    cluster.kubectl("patch", "rsvc", "math", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"scaling": {"paused": True, "replicas": 1}}}))
    assert eventually(lambda: list(costs(cluster, namespace, selector)) == [busy],
                      what="the idle pod removed, the busy one kept")
