"""The API server admits what the operator renders for every example service.

Each ReasoningService in ``examples/`` and the docs is defaulted by the API server (a
server-side dry-run of the service itself), rendered as the reconcile handler renders it,
and every child is applied with a server-side dry-run into a namespace that enforces the
Pod Security ``restricted`` standard. Deployments are only warned about at that level, so a
Pod built from each Deployment's template is dry-run too: the enforcing check.

A second API server on the same etcd runs without ``ExtendedResourceToleration`` (as AKS
and self-managed clusters often do): a Triton pod created through it must still tolerate
the ``nvidia.com/gpu`` taint by itself and be scheduled onto a GPU node (issue 20, row 6).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import LOG_FILES
from ponder_localstack.cluster import Cluster
from ponder_operator.api.spec import parse_spec
from ponder_operator.reconcile import Capacity, render_children
from ponder_operator.render import GPU_RESOURCE, Owner, RenderOptions

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
RESTRICTED = {f"pod-security.kubernetes.io/{mode}{suffix}": value
              for mode in ("enforce", "warn")
              for suffix, value in (("", "restricted"), ("-version", "latest"))}
NO_ERT_APISERVER = "kube-apiserver-no-ert"


def _services() -> list[tuple[str, dict[str, Any]]]:
    """Every ReasoningService in the examples and in the docs' yaml blocks."""
    found = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found.append((f"{path.name}:{doc['metadata']['name']}", doc))
    for page in sorted((REPO / "docs").rglob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.DOTALL):
            for doc in yaml.safe_load_all(block):
                if isinstance(doc, dict) and doc.get("kind") == "ReasoningService":
                    found.append((f"{page.name}:{doc['metadata']['name']}", doc))
    return found


SERVICES = _services()


def kubectl(cluster: Cluster, *args: str, objects: Any = None,
            kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl, failing with its stderr; ``objects`` (one or a list) go to its stdin."""
    config = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    docs = objects if isinstance(objects, list) else [objects]
    text = yaml.safe_dump_all(docs) if objects is not None else None
    return cluster.run_tool("kubectl", *config, *args, input_text=text)


def restricted(cluster: Cluster, namespace: str) -> str:
    cluster.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    deadline = time.monotonic() + 60  # pods need the default ServiceAccount to exist
    while not cluster.kubectl("get", "serviceaccount", "default", "-n", namespace,
                              "--ignore-not-found", "-o", "name"):
        assert time.monotonic() < deadline, "no default ServiceAccount in the namespace"
        time.sleep(0.2)
    return namespace


def rendered(cluster: Cluster, namespace: str, service: dict[str, Any]) -> list[dict[str, Any]]:
    """The children the operator would apply for ``service`` as the API server defaults it."""
    service = {**service, "metadata": {**service["metadata"], "namespace": namespace}}
    defaulted = json.loads(kubectl(cluster, "apply", "--dry-run=server", "-o", "json",
                                   "-n", namespace, "-f", "-", objects=service).stdout)
    owner = Owner(name=defaulted["metadata"]["name"], namespace=namespace,
                  uid=defaulted["metadata"].get("uid") or "00000000-0000-0000-0000-000000000000")
    return render_children(owner, parse_spec(defaulted), RenderOptions(), Capacity())


def pod_from(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Pod a Deployment's ReplicaSet would create (no owner: nothing may collect it)."""
    template = deployment["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{deployment['metadata']['name']}-{secrets.token_hex(3)}",
                         "namespace": deployment["metadata"]["namespace"],
                         "labels": template["metadata"]["labels"]},
            "spec": template["spec"]}


def create_service_accounts(cluster: Cluster, namespace: str,
                            children: list[dict[str, Any]]) -> None:
    """The ServiceAccounts the pods name must exist for a pod to be admitted at all."""
    names = {c["metadata"]["name"] for c in children if c["kind"] == "ServiceAccount"}
    names |= {c["spec"]["template"]["spec"]["serviceAccountName"] for c in children
              if c["kind"] == "Deployment"
              and "serviceAccountName" in c["spec"]["template"]["spec"]}
    for name in sorted(names):
        kubectl(cluster, "apply", "-n", namespace, "-f", "-", objects={
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})


def deployment(children: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (found,) = [c for c in children
                if c["kind"] == "Deployment" and c["metadata"]["name"].endswith(suffix)]
    return found


@pytest.mark.parametrize(("where", "service"), SERVICES, ids=[w for w, _ in SERVICES])
def test_every_rendered_child_and_pod_is_admitted_in_a_restricted_namespace(
    crds: Cluster, namespace: str, where: str, service: dict[str, Any]
) -> None:
    restricted(crds, namespace)
    children = rendered(crds, namespace, service)
    create_service_accounts(crds, namespace, children)

    applied = kubectl(crds, "apply", "--dry-run=server", "-o", "json", "-f", "-",
                      objects=children)
    assert "PodSecurity" not in applied.stderr, applied.stderr
    kinds = [item["kind"] for item in json.loads(applied.stdout)["items"]]
    assert sorted(kinds) == sorted(c["kind"] for c in children)

    for child in children:
        if child["kind"] != "Deployment":
            continue
        admitted = json.loads(kubectl(crds, "create", "--dry-run=server", "-o", "json",
                                      "-f", "-", objects=pod_from(child)).stdout)
        assert admitted["kind"] == "Pod"

    triton = deployment(children, "-triton")["spec"]["template"]["spec"]
    assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in (
        triton["tolerations"]), "the GPU toleration is rendered, not left to admission"


def test_a_triton_pod_without_its_hardening_is_refused_there(
    crds: Cluster, namespace: str
) -> None:
    # The check above can fail: the same namespace refuses the pod without its securityContext.
    restricted(crds, namespace)
    pod = pod_from(deployment(rendered(crds, namespace, SERVICES[0][1]), "-triton"))
    del pod["spec"]["securityContext"]
    result = crds.run_tool("kubectl", "create", "--dry-run=server", "-f", "-",
                           input_text=yaml.safe_dump(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr


@pytest.fixture(scope="module")
def without_toleration_plugin(cluster: Cluster) -> Iterator[Path]:
    """A kubeconfig for an API server on the same etcd without ExtendedResourceToleration."""
    LOG_FILES.append(cluster.logs_dir / f"{NO_ERT_APISERVER}.log")
    kubeconfig = cluster.start_extra_apiserver(NO_ERT_APISERVER, admission_plugins=())
    yield kubeconfig
    (process,) = [p for p in cluster.processes if p.name == NO_ERT_APISERVER]
    process.stop()
    cluster.processes.remove(process)


def scheduled(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    pod = json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json"))
    conditions = pod.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "PodScheduled"), {})


def wait_for_scheduling(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The pod's PodScheduled condition once the scheduler has placed or refused it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        condition = scheduled(cluster, namespace, name)
        if condition.get("status") == "True" or condition.get("reason") == "Unschedulable":
            return condition
        time.sleep(0.25)
    raise AssertionError(f"pod {name} was never placed or refused by the scheduler")


def test_without_the_admission_plugin_the_triton_pod_still_tolerates_the_gpu_taint(
    crds: Cluster, namespace: str, without_toleration_plugin: Path
) -> None:
    (demo,) = [s for w, s in SERVICES if w == "demo.yaml:math"]  # a configMap repository
    pod = pod_from(deployment(rendered(crds, namespace, demo), "-triton"))
    bare = json.loads(json.dumps(pod))
    bare["metadata"]["name"] += "-bare"
    bare["spec"]["tolerations"] = [t for t in pod["spec"]["tolerations"]
                                   if t["key"] != GPU_RESOURCE]
    for obj in (pod, bare):
        kubectl(crds, "create", "-f", "-", objects=obj, kubeconfig=without_toleration_plugin)

    # The control: with the plugin off, a GPU pod without the toleration cannot be placed.
    refused = wait_for_scheduling(crds, namespace, bare["metadata"]["name"])
    assert refused["status"] == "False"
    assert "untolerated taint" in refused["message"]
    placed = wait_for_scheduling(crds, namespace, pod["metadata"]["name"])
    assert placed["status"] == "True", placed
    node = json.loads(crds.kubectl("get", "pod", pod["metadata"]["name"], "-n", namespace,
                                   "-o", "json"))["spec"]["nodeName"]
    assert node.startswith("gpu-h100-")
