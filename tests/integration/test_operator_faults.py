"""The operator on a bad day: the API server restarts, operator replicas keep dying.

Real control plane (the session's local cluster, KWOK GPU nodes), real ``ponder-operator``
processes. What must hold afterwards is what a platform team would check: every service
reconciled to its latest spec, every child exactly once, the operator still running.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fixtures_operator import StartOperator, eventually, get_json
from ponder_localstack.cluster import Cluster
from ponder_localstack.proc import Process

H100 = "NVIDIA-H100-80GB-HBM3"
CHILDREN_PER_SERVICE = 9
CHILD_KINDS = "deployment,service,configmap,poddisruptionbudget,serviceaccount,role,rolebinding"


def service(name: str, image_tag: str = "24.10-vllm-python-py3") -> dict[str, Any]:
    return {
        "apiVersion": "ponder.dev/v1alpha1", "kind": "ReasoningService",
        "metadata": {"name": name},
        "spec": {"model": {"name": "qwen-math", "image": f"nvcr.io/nvidia/tritonserver:{image_tag}",
                           "repository": {"configMap": {"name": "models"}}},
                 "resources": {"gpuProduct": H100},
                 "scaling": {"minReplicas": 1, "maxReplicas": 4}},
    }  # fmt: skip


def apply(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(obj))


def ready(cluster: Cluster, namespace: str, name: str) -> bool:
    conditions = get_json(cluster, "rsvc", name, "-n", namespace).get("status", {})
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in conditions.get("conditions", []))  # fmt: skip


def triton_image(cluster: Cluster, namespace: str, name: str) -> str:
    deployment = get_json(cluster, "deployment", f"{name}-triton", "-n", namespace)
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def children(cluster: Cluster, namespace: str) -> list[str]:
    out = cluster.kubectl("get", CHILD_KINDS, "-n", namespace, "-o", "name",
                          "-l", "app.kubernetes.io/managed-by=ponder-operator")  # fmt: skip
    return out.split()


def test_a_restarted_api_server_misses_no_update_and_duplicates_no_child(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    operator = start_operator()
    apply(cluster, namespace, service("before"))
    eventually(lambda: ready(cluster, namespace, "before"), what="Ready before the restart")

    cluster.restart_apiserver(down_seconds=3)
    # Changes made once it is back reach the operator through its resumed watches.
    apply(cluster, namespace, service("before", image_tag="25.01-py3"))
    apply(cluster, namespace, service("after"))
    eventually(lambda: triton_image(cluster, namespace, "before").endswith("25.01-py3"),
               timeout_seconds=90, what="the update made after the restart rolled out")
    eventually(lambda: ready(cluster, namespace, "after"), timeout_seconds=90,
               what="the service created after the restart became Ready")

    names = children(cluster, namespace)
    assert len(names) == len(set(names)) == 2 * CHILDREN_PER_SERVICE, names
    assert operator.alive


def test_operator_replicas_killed_alternately_during_reconciles_converge(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    # Its own peering object: peers left by other tests (60 s lifetimes) must not pause these.
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps({
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
        "metadata": {"name": namespace}}))
    peered = {"PONDER_PEERING_NAME": namespace, "PONDER_PEERING_LIFETIME_SECONDS": "5"}
    replicas: list[Process] = [start_operator(standalone=False, env=peered) for _ in range(2)]
    names = [f"svc-{i}" for i in range(4)]
    for round_, name in enumerate(names):
        apply(cluster, namespace, service(name))
        time.sleep(1.5)  # mid-reconcile of this one and the ones before
        doomed = replicas.pop(0) if round_ % 2 == 0 else replicas.pop()
        doomed.kill()
        replicas.append(start_operator(standalone=False, env=peered))
    apply(cluster, namespace, service(names[0], image_tag="25.01-py3"))


    def all_ready() -> bool:
        late = [n for n in names if not ready(cluster, namespace, n)]
        if late:
            raise AssertionError(f"not Ready: {late}")  # shown if it never converges
        return True

    eventually(all_ready, timeout_seconds=240, what="every service Ready after the kills")
    eventually(lambda: triton_image(cluster, namespace, names[0]).endswith("25.01-py3"),
               timeout_seconds=60, what="the last update applied")
    found = children(cluster, namespace)
    assert len(found) == len(set(found)) == len(names) * CHILDREN_PER_SERVICE

    def triton_pods_per_service() -> list[str]:
        pods = get_json(cluster, "pods", "-n", namespace, "-l", "ponder.dev/component=triton")
        return sorted(p["metadata"]["labels"]["ponder.dev/service"] for p in pods["items"])

    eventually(lambda: triton_pods_per_service() == names, timeout_seconds=60,
               what="one Triton pod per service (minReplicas 1), none duplicated")
    assert all(r.alive for r in replicas)
