"""The operator runs Triton for a ReasoningService on the real control plane (KWOK GPU nodes)."""

from __future__ import annotations

import json
from typing import Any

from fixtures_operator import StartOperator, eventually, get_json
from ponder_localstack.cluster import Cluster

H100 = "NVIDIA-H100-80GB-HBM3"
CHILD_KINDS = ("deployment", "service", "configmap", "poddisruptionbudget", "serviceaccount",
               "role", "rolebinding")


def service(name: str, *, replicas: int = 2, product: str = H100,
            image: str = "nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3") -> dict[str, Any]:
    return {
        "apiVersion": "ponder.dev/v1alpha1", "kind": "ReasoningService",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "qwen-math", "image": image,
                      "repository": {"configMap": {"name": "models"}}},
            "resources": {"gpuProduct": product},
            "scaling": {"minReplicas": replicas, "maxReplicas": 8},
            "router": {"replicas": 1},
            "cost": {"gpuHourlyPrice": 4.0, "labels": {"team": "math"}},
        },
    }


def apply(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(obj))


def rsvc(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = get_json(cluster, "rsvc", name, "-n", namespace)
    return got


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


def children_names(cluster: Cluster, namespace: str) -> list[str]:
    out = cluster.kubectl("get", ",".join(CHILD_KINDS), "-n", namespace,
                          "-l", "app.kubernetes.io/managed-by=ponder-operator", "-o", "name")
    return sorted(out.split())


def test_creating_a_service_brings_up_ready_triton_pods_and_a_router(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    apply(cluster, namespace, service("math"))

    ready = eventually(lambda: condition(rsvc(cluster, namespace, "math"), "Ready")
                       .get("status") == "True", what="Ready=True")
    assert ready
    status = rsvc(cluster, namespace, "math")["status"]
    assert status["readyReplicas"] == 2
    assert status["replicas"] == 2
    assert children_names(cluster, namespace) == sorted([
        "configmap/math-router", "deployment.apps/math-router", "deployment.apps/math-triton",
        "poddisruptionbudget.policy/math-triton", "role.rbac.authorization.k8s.io/math-router",
        "rolebinding.rbac.authorization.k8s.io/math-router", "service/math-router",
        "service/math-triton", "serviceaccount/math-router",
    ])
    pods = get_json(cluster, "pods", "-n", namespace, "-l", status["selector"])["items"]
    assert {p["spec"]["nodeName"] for p in pods} <= {"gpu-h100-0", "gpu-h100-1"}
    # Cost labels sit on the Deployment, not in the pod template: editing them must not
    # restart every GPU pod.
    triton = get_json(cluster, "deployment", "math-triton", "-n", namespace)
    assert triton["metadata"]["labels"]["team"] == "math"
    assert pods
    assert all("team" not in p["metadata"]["labels"] for p in pods)
    row = cluster.kubectl("get", "rsvc", "math", "-n", namespace, "--no-headers")
    assert row.split()[1:5] == ["2", "2", "2", H100]


def test_updates_roll_out_and_hand_edits_are_reverted(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    apply(cluster, namespace, service("math", replicas=1))
    eventually(lambda: condition(rsvc(cluster, namespace, "math"), "Ready")["status"] == "True")

    updated = service("math", replicas=1, image="nvcr.io/nvidia/tritonserver:25.01-py3")
    updated["spec"]["budgets"] = {"tiers": [
        {"name": "easy", "maxDifficulty": 0.3, "maxTokens": 512, "strategy": "single"},
        {"name": "hard", "maxDifficulty": 1.0, "maxTokens": 4096, "maxSamples": 8,
         "initialSamples": 3, "strategy": "vote"},
    ]}
    apply(cluster, namespace, updated)

    def image() -> str:
        d = get_json(cluster, "deployment", "math-triton", "-n", namespace)
        return str(d["spec"]["template"]["spec"]["containers"][0]["image"])

    eventually(lambda: image().endswith("25.01-py3"), what="new image rolled out")
    config = eventually(lambda: json.loads(get_json(
        cluster, "configmap", "math-router", "-n", namespace)["data"]["router.json"]))
    eventually(lambda: [t["name"] for t in json.loads(get_json(
        cluster, "configmap", "math-router", "-n", namespace)["data"]["router.json"]
    )["budgets"]["tiers"]] == ["easy", "hard"], what="router config re-rendered")
    assert config["modelName"] == "qwen-math"

    cluster.kubectl("set", "image", "-n", namespace, "deployment/math-triton",
                    "triton=attacker/triton:latest")
    eventually(lambda: image().endswith("25.01-py3"), what="hand edit reverted")


def test_deleting_a_service_garbage_collects_every_child(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    apply(cluster, namespace, service("gone", replicas=1))
    eventually(lambda: len(children_names(cluster, namespace)) == 9, what="children created")
    cluster.kubectl("delete", "rsvc", "gone", "-n", namespace)
    eventually(lambda: children_names(cluster, namespace) == [], what="children collected")


def test_an_operator_killed_mid_reconcile_leaves_no_duplicates_after_restart(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    first = start_operator()
    apply(cluster, namespace, service("crash", replicas=1))
    eventually(lambda: cluster.kubectl("get", "configmap", "crash-router", "-n", namespace,
                                       "--ignore-not-found", "-o", "name"))
    first.kill()
    start_operator()
    eventually(lambda: condition(rsvc(cluster, namespace, "crash"), "Ready")
               .get("status") == "True", what="Ready after restart")
    names = children_names(cluster, namespace)
    assert len(names) == len(set(names)) == 9
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "ponder.dev/component=triton")
    assert len(pods["items"]) == 1


def test_more_replicas_than_gpus_sets_unschedulable(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    apply(cluster, namespace, service("big", replicas=3, product="NVIDIA-L4"))
    unschedulable = eventually(
        lambda: condition(rsvc(cluster, namespace, "big"), "Unschedulable")
        .get("status") == "True" and condition(rsvc(cluster, namespace, "big"), "Unschedulable"),
        what="Unschedulable=True")
    assert unschedulable["reason"] == "InsufficientGPU"
    assert "nvidia.com/gpu" in unschedulable["message"]


def test_an_unknown_gpu_product_sets_ready_false_with_a_reason_and_an_event(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    apply(cluster, namespace, service("nogpu", replicas=1, product="NVIDIA-B300"))
    ready = eventually(lambda: condition(rsvc(cluster, namespace, "nogpu"), "Ready")
                       .get("reason") == "UnknownGpuProduct"
                       and condition(rsvc(cluster, namespace, "nogpu"), "Ready"))
    assert ready["status"] == "False"
    events = eventually(lambda: cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=UnknownGpuProduct",
        "-o", "name"))
    assert events


def test_a_child_the_api_server_refuses_sets_ready_false_naming_the_field(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    """The CRD and the models let any string key a node selector; the Deployment's own
    validation does not. The operator reports the refusal instead of failing in a loop,
    and fixing the spec brings the service up."""
    operator = start_operator()
    bad = service("badkey", replicas=1)
    bad["spec"]["resources"]["nodeSelector"] = {"not a label key!": "x"}
    apply(cluster, namespace, bad)
    ready = eventually(lambda: condition(rsvc(cluster, namespace, "badkey"), "Ready")
                       .get("reason") == "ChildRejected"
                       and condition(rsvc(cluster, namespace, "badkey"), "Ready"),
                       what="Ready=False ChildRejected")
    assert ready["status"] == "False"
    assert "nodeSelector" in ready["message"]
    assert "badkey-triton" in ready["message"]
    assert eventually(lambda: cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=ChildRejected",
        "-o", "name"))
    apply(cluster, namespace, service("badkey", replicas=1))  # nodeSelector dropped
    eventually(lambda: condition(rsvc(cluster, namespace, "badkey"), "Ready")
               .get("status") == "True", timeout_seconds=90, what="Ready after the fix")
    # Refused, not crashed: no 422 escaped as a handler failure (the log is shared with
    # other tests' namespaces, so this looks for the refusal's own exception).
    assert "UnprocessibleEntityError" not in operator.log_path.read_text()
    assert operator.alive


def test_two_peered_operators_act_one_at_a_time_and_the_second_takes_over(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    first = start_operator(standalone=False)
    second = start_operator(standalone=False)
    apply(cluster, namespace, service("ha", replicas=1))
    eventually(lambda: condition(rsvc(cluster, namespace, "ha"), "Ready").get("status") == "True")
    logs = [p.log_path.read_text() for p in (first, second)]
    acted = [("reconcile-create" in log) for log in logs]
    assert acted.count(True) == 1, "exactly one peer handled the creation"
    active = first if acted[0] else second

    active.stop()
    updated = service("ha", replicas=1, image="nvcr.io/nvidia/tritonserver:25.02-py3")
    apply(cluster, namespace, updated)
    eventually(lambda: get_json(cluster, "deployment", "ha-triton", "-n", namespace)["spec"]
               ["template"]["spec"]["containers"][0]["image"].endswith("25.02-py3"),
               timeout_seconds=90, what="the standby peer took over")


def test_every_pod_it_runs_is_admitted_under_the_restricted_standard_read_only_and_non_root(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    cluster.kubectl("label", "namespace", namespace,
                    "pod-security.kubernetes.io/enforce=restricted")  # fmt: skip
    start_operator()
    apply(cluster, namespace, service("locked", replicas=1))
    eventually(lambda: condition(rsvc(cluster, namespace, "locked"), "Ready")
               .get("status") == "True", what="Ready with pods admitted under restricted")
    pods = get_json(cluster, "pods", "-n", namespace)["items"]
    assert {p["metadata"]["labels"]["ponder.dev/component"] for p in pods} == {"triton", "router"}
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
