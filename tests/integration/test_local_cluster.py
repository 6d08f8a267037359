"""The local control plane behaves like a real cluster with GPU nodes."""

from __future__ import annotations

import json
import time
from typing import Any

from ponder_localstack.cluster import Cluster

K8S_VERSION = "v1.35.4"
HELM_VERSION = "v3.19.5"


def gpu_deployment(name: str, replicas: int, product: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": product},
                    "containers": [{
                        "name": "triton",
                        "image": "nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3",
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }],
                },
            },
        },
    }


def pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def unschedulable(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in pod.get("status", {}).get("conditions", []))


def wait_for(predicate: Any, timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"condition not met within {timeout_seconds} s")


def test_gpu_pods_are_scheduled_onto_fake_gpu_nodes_and_become_ready(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input_text=json.dumps(gpu_deployment("h100", 3, "NVIDIA-H100-80GB-HBM3")))
    wait_for(lambda: sum(is_ready(p) for p in pods(cluster, namespace, "h100")) == 3)
    placed = {p["spec"]["nodeName"] for p in pods(cluster, namespace, "h100")}
    assert placed <= {"gpu-h100-0", "gpu-h100-1"}
    tolerations = pods(cluster, namespace, "h100")[0]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations), "GPU taint toleration added"


def test_pods_beyond_gpu_capacity_stay_pending_as_unschedulable(
    cluster: Cluster, namespace: str
) -> None:
    # The L4 pool has one node with two GPUs: the third replica cannot fit anywhere.
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input_text=json.dumps(gpu_deployment("l4", 3, "NVIDIA-L4")))
    wait_for(lambda: sum(is_ready(p) for p in pods(cluster, namespace, "l4")) == 2)
    wait_for(lambda: sum(unschedulable(p) for p in pods(cluster, namespace, "l4")) == 1)
    pending = [p for p in pods(cluster, namespace, "l4") if unschedulable(p)]
    assert pending[0]["status"]["phase"] == "Pending"
    message = next(c["message"] for c in pending[0]["status"]["conditions"]
                   if c["type"] == "PodScheduled")
    assert "nvidia.com/gpu" in message


def test_kubectl_and_helm_report_the_versions_that_were_built(cluster: Cluster) -> None:
    versions = json.loads(cluster.kubectl("version", "-o", "json"))
    assert versions["clientVersion"]["gitVersion"] == K8S_VERSION
    assert versions["serverVersion"]["gitVersion"] == K8S_VERSION
    helm = cluster.helm("version", "--short").stdout
    assert helm.startswith(HELM_VERSION)


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.ponder.dev"},
    "spec": {
        "group": "example.ponder.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
        }],
    },
}


def test_a_crd_applied_with_kubectl_is_served(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/widgets.example.ponder.dev")
    widget = {"apiVersion": "example.ponder.dev/v1", "kind": "Widget",
              "metadata": {"name": "w1"}, "spec": {"size": 3}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(widget))
    got = json.loads(cluster.kubectl("get", "widget", "w1", "-n", namespace, "-o", "json"))
    assert got["spec"]["size"] == 3
