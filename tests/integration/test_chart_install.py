"""The Helm chart installs, upgrades and uninstalls on the real control plane.

KWOK marks the operator's pods Running and Ready without running them, so "the Deployment
is Ready" shows only that the pods were admitted (Pod Security) and scheduled. To prove the
chart's RBAC, the real operator runs as a local process authenticated with a token of the
chart's ServiceAccount, reconciles example ReasoningServices, and its log must hold no
Forbidden error.

Every release gets its own name and ClusterKopfPeering, so tests never share cluster-scoped
objects; each test removes what it installed.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import LOG_FILES
from fixtures_operator import eventually, get_json
from ponder_localstack.cluster import Cluster
from ponder_localstack.proc import Process, free_port, http_ok

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ponder"
RBAC_FORBIDDEN = re.compile(r'forbidden: user \\?"system:serviceaccount:', re.IGNORECASE)
CHILD_KINDS = ("deployment", "service", "configmap", "poddisruptionbudget", "serviceaccount",
               "role", "rolebinding")


@dataclass(frozen=True)
class Release:
    """One installation of the chart: release name, namespace and derived object names."""

    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-ponder"

    @property
    def peering(self) -> str:
        return self.fullname

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"


def helm_install(cluster: Cluster, release: Release, *args: str,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.helm("install", release.name, str(CHART), "-n", release.namespace,
                        "--set", f"peering.name={release.peering}",
                        "--wait", "--timeout", "60s", *args, check=check)


@pytest.fixture
def release(cluster: Cluster, crds: Cluster, namespace: str) -> Iterator[Release]:
    """A release name for this test; whatever it installed is uninstalled afterwards."""
    installed = Release(f"p{secrets.token_hex(3)}", namespace)
    yield installed
    cluster.helm("uninstall", installed.name, "-n", namespace, "--wait", "--timeout", "60s",
                 check=False)


@pytest.fixture
def apps_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A second namespace, for ReasoningServices outside the operator's own."""
    name = f"{namespace[:50]}-apps"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")
    cluster.kubectl("delete", "persistentvolume", "-l", f"ponder.dev/test={name}",
                    "--wait=false")


def deployment_ready(cluster: Cluster, namespace: str, name: str, replicas: int) -> bool:
    status = get_json(cluster, "deployment", name, "-n", namespace).get("status", {})
    return bool(status.get("readyReplicas") == replicas == status.get("updatedReplicas"))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in obj.get("status", {}).get("conditions", [])
                 if c["type"] == type_), {})


def service_account_kubeconfig(cluster: Cluster, release: Release, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token)."""
    return cluster.service_account_kubeconfig(release.fullname, release.namespace, path, "20m")


def provide_model_store(cluster: Cluster, namespace: str) -> None:
    """The PersistentVolumeClaim examples/minimal.yaml reads its model from, bound to a
    static volume (nothing mounts it: KWOK runs no containers)."""
    volume = f"model-store-{namespace}"[:63]
    cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "PersistentVolume",
         "metadata": {"name": volume, "labels": {"ponder.dev/test": namespace}},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"],
                  "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
                  "hostPath": {"path": "/var/lib/models"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "model-store", "namespace": namespace},
         "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "",
                  "volumeName": volume, "resources": {"requests": {"storage": "1Gi"}}}},
    ]))


def start_operator_as(
    release: Release, kubeconfig: Path, log_path: Path, port: int
) -> Process:
    """The real operator, peered like the chart's replicas, with the ServiceAccount's token."""
    LOG_FILES.append(log_path)
    process = Process(
        "operator-as-service-account", [sys.executable, "-m", "ponder_operator"], log_path,
        env={"KUBECONFIG": str(kubeconfig), "PONDER_HEALTH_PORT": str(port),
             "PONDER_STANDALONE": "0", "PONDER_PEERING_NAME": release.peering},
    ).start()
    process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60)
    return process


# -- install -------------------------------------------------------------------------------


def test_installing_the_chart_brings_the_operator_to_ready_under_the_restricted_standard(
    cluster: Cluster, release: Release
) -> None:
    # Helm adopts the existing namespace only with its ownership metadata.
    cluster.kubectl("label", "namespace", release.namespace, "app.kubernetes.io/managed-by=Helm")
    cluster.kubectl("annotate", "namespace", release.namespace,
                    f"meta.helm.sh/release-name={release.name}",
                    f"meta.helm.sh/release-namespace={release.namespace}")
    helm_install(cluster, release, "-f", str(CHART / "ci" / "ha-values.yaml"),
                 "--set", "podSecurity.manageNamespace=true")

    labels = get_json(cluster, "namespace", release.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    eventually(lambda: deployment_ready(cluster, release.namespace, release.fullname, 3),
               timeout_seconds=30, what="3 operator replicas ready")
    pods = get_json(cluster, "pods", "-n", release.namespace,
                    "-l", f"app.kubernetes.io/instance={release.name}")["items"]
    assert len(pods) == 3
    assert {p["spec"]["nodeName"] for p in pods} == {"cpu-0"}, "no GPU node for the operator"
    assert get_json(cluster, "clusterkopfpeering", release.peering)

    # The namespace enforces the standard: a privileged pod is refused, so the operator's pods
    # were admitted because they comply.
    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "securityContext": {"privileged": True}}]}}
    refused = cluster.run_tool("kubectl", "apply", "-n", release.namespace, "-f", "-",
                               input_text=json.dumps(privileged), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr

    cluster.helm("uninstall", release.name, "-n", release.namespace, "--wait")
    kept = get_json(cluster, "namespace", release.namespace)
    assert kept["status"]["phase"] == "Active", "helm.sh/resource-policy: keep"


def test_the_operator_with_the_charts_service_account_reconciles_services_without_forbidden(
    cluster: Cluster, release: Release, apps_namespace: str, tmp_path: Path
) -> None:
    helm_install(cluster, release)
    kubeconfig = service_account_kubeconfig(cluster, release, tmp_path / "kubeconfig")
    log_path = tmp_path / "operator.log"
    health_port = free_port()
    operator = start_operator_as(release, kubeconfig, log_path, health_port)
    try:
        # The chart's `helm test` pod, as installed, passes against this operator.
        hooks = [d for d in yaml.safe_load_all(
            cluster.helm("get", "hooks", release.name, "-n", release.namespace).stdout) if d]
        (test_pod,) = [h for h in hooks if h["kind"] == "Pod"]
        script = test_pod["spec"]["containers"][0]["command"][-1].replace(
            f"{release.fullname}.{release.namespace}.svc:8081", f"127.0.0.1:{health_port}")
        probe = subprocess.run([sys.executable, "-c", script], capture_output=True,
                               text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip().endswith("200")

        provide_model_store(cluster, apps_namespace)
        cluster.kubectl("apply", "-n", apps_namespace, "-f",
                        str(REPO / "examples" / "minimal.yaml"))
        unknown_gpu = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
        unknown_gpu["metadata"]["name"] = "no-such-gpu"
        unknown_gpu["spec"]["resources"] = {"gpuProduct": "NVIDIA-B999"}
        cluster.kubectl("apply", "-n", apps_namespace, "-f", "-",
                        input_text=json.dumps(unknown_gpu))

        ready = eventually(
            lambda: condition(get_json(cluster, "rsvc", "qwen-math-7b", "-n", apps_namespace),
                              "Ready").get("status") == "True",
            timeout_seconds=45, what="the example service Ready")
        assert ready
        children = cluster.kubectl("get", ",".join(CHILD_KINDS), "-n", apps_namespace, "-l",
                                   "ponder.dev/service=qwen-math-7b", "-o", "name").split()
        assert len(children) == 9, children
        warning = eventually(lambda: get_json(
            cluster, "events", "-n", apps_namespace,
            "--field-selector", "reason=UnknownGpuProduct")["items"],
            timeout_seconds=20, what="the UnknownGpuProduct event")
        assert warning[0]["involvedObject"]["name"] == "no-such-gpu"

        cluster.kubectl("delete", "rsvc", "--all", "-n", apps_namespace, "--timeout=30s")
    finally:
        operator.stop()
    log = log_path.read_text()
    assert "Handler 'reconcile-create' succeeded" in log
    forbidden = [line for line in log.splitlines() if RBAC_FORBIDDEN.search(line)]
    assert not forbidden, "\n".join(forbidden[:5])


# -- upgrade and uninstall -----------------------------------------------------------------


def test_upgrading_with_changed_values_rolls_the_operator_without_losing_services(
    cluster: Cluster, release: Release
) -> None:
    helm_install(cluster, release)
    cluster.kubectl("apply", "-n", release.namespace, "-f", str(REPO / "examples" / "minimal.yaml"))
    service_uid = get_json(cluster, "rsvc", "qwen-math-7b", "-n", release.namespace)[
        "metadata"]["uid"]

    def template_hashes() -> set[str]:
        pods = get_json(cluster, "pods", "-n", release.namespace,
                        "-l", f"app.kubernetes.io/instance={release.name}")["items"]
        return {p["metadata"]["labels"]["pod-template-hash"] for p in pods
                if not p["metadata"].get("deletionTimestamp")}

    before = eventually(template_hashes, timeout_seconds=20, what="operator pods")
    cluster.helm("upgrade", release.name, str(CHART), "-n", release.namespace, "--reuse-values",
                 "--set", "operator.logLevel=DEBUG", "--wait", "--timeout", "60s")

    after = eventually(lambda: (h := template_hashes()) and h.isdisjoint(before) and h,
                       timeout_seconds=30, what="pods of a new template")
    assert len(after) == 1
    deployment = get_json(cluster, "deployment", release.fullname, "-n", release.namespace)
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    env = {e["name"]: e.get("value") for e in
           deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PONDER_LOG_LEVEL"] == "DEBUG"
    assert env["PONDER_PEERING_NAME"] == release.peering, "--reuse-values kept the peering"
    eventually(lambda: deployment_ready(cluster, release.namespace, release.fullname, 2),
               timeout_seconds=30, what="the upgraded operator ready")
    kept = get_json(cluster, "rsvc", "qwen-math-7b", "-n", release.namespace)
    assert kept["metadata"]["uid"] == service_uid


def test_uninstalling_removes_everything_but_the_crds_and_the_services(
    cluster: Cluster, release: Release
) -> None:
    helm_install(cluster, release, "-f", str(CHART / "ci" / "ha-values.yaml"))
    cluster.kubectl("apply", "-n", release.namespace, "-f", str(REPO / "examples" / "minimal.yaml"))
    selector = f"app.kubernetes.io/instance={release.name}"
    namespaced = "deployment,service,serviceaccount,configmap,poddisruptionbudget,networkpolicy"
    cluster_wide = "clusterrole,clusterrolebinding,clusterkopfpeering"
    installed = cluster.kubectl("get", namespaced, "-n", release.namespace, "-l", selector,
                                "-o", "name").split()
    assert len(installed) == 8, installed  # deployment, service, SA, pricing, PDB, 3 policies
    assert len(cluster.kubectl("get", cluster_wide, "-l", selector, "-o", "name").split()) == 3

    cluster.helm("uninstall", release.name, "-n", release.namespace, "--wait", "--timeout", "60s")

    assert cluster.kubectl("get", namespaced, "-n", release.namespace, "-l", selector,
                           "-o", "name").split() == []
    assert cluster.kubectl("get", cluster_wide, "-l", selector, "-o", "name").split() == []
    for crd in ("reasoningservices.ponder.dev", "clusterkopfpeerings.kopf.dev"):
        assert get_json(cluster, "crd", crd)["metadata"]["name"] == crd
    assert get_json(cluster, "rsvc", "qwen-math-7b", "-n", release.namespace)


MONITORING_KINDS = (("servicemonitors", "ServiceMonitor"), ("podmonitors", "PodMonitor"),
                    ("prometheusrules", "PrometheusRule"))


def monitoring_crds() -> list[dict[str, Any]]:
    """Schema-less stand-ins for prometheus-operator's CRDs: the kinds exist, nothing acts."""
    return [{
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                 "names": {"plural": plural, "kind": kind},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": True}}}]},
    } for plural, kind in MONITORING_KINDS]


@pytest.mark.parametrize("scenario", ["minimal", "sample", "monitoring"])
def test_each_ci_scenario_installs_and_its_operator_becomes_ready(
    cluster: Cluster, release: Release, scenario: str
) -> None:
    if scenario == "monitoring":
        cluster.kubectl_apply(monitoring_crds())
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                        *(f"crd/{p}.monitoring.coreos.com" for p, _ in MONITORING_KINDS))
    try:
        helm_install(cluster, release, "-f", str(CHART / "ci" / f"{scenario}-values.yaml"))
        values = yaml.safe_load((CHART / "ci" / f"{scenario}-values.yaml").read_text())
        replicas = values.get("operator", {}).get("replicas", 2)
        eventually(lambda: deployment_ready(cluster, release.namespace, release.fullname,
                                            replicas),
                   timeout_seconds=30, what=f"{replicas} operator replicas ready")
        if scenario == "sample":
            sample = get_json(cluster, "rsvc", "qwen-math", "-n", release.namespace)
            assert sample["spec"]["scaling"]["maxReplicas"] == 2
        if scenario == "monitoring":
            installed = cluster.kubectl("get", "servicemonitor,podmonitor,prometheusrule",
                                        "-n", release.namespace, "-o", "name").split()
            assert len(installed) == 4, installed
    finally:
        if scenario == "monitoring":
            cluster.helm("uninstall", release.name, "-n", release.namespace, "--wait",
                         check=False)
            cluster.kubectl("delete", "--wait=false", *(
                f"crd/{p}.monitoring.coreos.com" for p, _ in MONITORING_KINDS))


def test_a_values_typo_is_rejected_at_install_time_with_a_message_naming_it(
    cluster: Cluster, release: Release
) -> None:
    result = helm_install(cluster, release, "--set", "operator.replica=3", check=False)
    assert result.returncode != 0
    assert "additional properties 'replica' not allowed" in result.stderr
    assert cluster.helm("list", "-n", release.namespace, "-q").stdout.strip() == ""


# -- what the ServiceAccount may do --------------------------------------------------------

ELSEWHERE = "kube-system"
# (verb, resource, namespace or "" for cluster scope, subresource, allowed)
CAN_I = [
    ("get", "secrets", ELSEWHERE, "", False),
    ("list", "secrets", "", "", False),
    ("watch", "secrets", ELSEWHERE, "", False),
    ("delete", "namespaces", "", "", False),
    ("create", "namespaces", "", "", False),
    ("patch", "namespaces", "", "", False),
    ("patch", "deployments.apps", ELSEWHERE, "", True),
    ("create", "deployments.apps", ELSEWHERE, "", True),
    ("delete", "deployments.apps", ELSEWHERE, "", False),
    ("update", "deployments.apps", ELSEWHERE, "", False),
    ("patch", "deployments.apps", ELSEWHERE, "scale", False),
    ("get", "configmaps", ELSEWHERE, "", False),
    ("delete", "configmaps", ELSEWHERE, "", False),
    ("get", "pods", ELSEWHERE, "", True),
    ("patch", "pods", ELSEWHERE, "", True),  # pod-deletion-cost
    ("create", "pods", ELSEWHERE, "", False),
    ("delete", "pods", ELSEWHERE, "", False),
    ("create", "pods", ELSEWHERE, "exec", False),
    ("list", "nodes", "", "", True),
    ("watch", "nodes", "", "", True),
    ("patch", "nodes", "", "", False),
    ("create", "clusterroles.rbac.authorization.k8s.io", "", "", False),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "", "", False),
    ("bind", "roles.rbac.authorization.k8s.io", ELSEWHERE, "", False),
    ("escalate", "roles.rbac.authorization.k8s.io", ELSEWHERE, "", False),
    ("impersonate", "serviceaccounts", ELSEWHERE, "", False),
    ("create", "serviceaccounts", ELSEWHERE, "token", False),
    ("delete", "reasoningservices.ponder.dev", ELSEWHERE, "", False),
    ("patch", "reasoningservices.ponder.dev", ELSEWHERE, "status", True),
    ("update", "reasoningservices.ponder.dev", ELSEWHERE, "", False),
    ("patch", "clusterkopfpeerings.kopf.dev", "", "", True),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", "", "", False),
    ("create", "events", ELSEWHERE, "", True),
    ("delete", "events", ELSEWHERE, "", False),
]


def test_the_operator_service_account_may_do_what_it_needs_and_nothing_more(
    cluster: Cluster, release: Release
) -> None:
    helm_install(cluster, release)
    wrong = []
    for verb, resource, where, subresource, allowed in CAN_I:
        args = ["auth", "can-i", verb, resource, f"--as={release.service_account}"]
        args += ["-n", where] if where else ["--all-namespaces"] if resource == "secrets" else []
        args += [f"--subresource={subresource}"] if subresource else []
        answer = cluster.run_tool("kubectl", *args, check=False).stdout.strip()
        if (answer == "yes") != allowed:
            wrong.append(f"can-i {verb} {resource}{'/' + subresource if subresource else ''} "
                         f"in {where or 'the cluster'}: {answer}, expected "
                         f"{'yes' if allowed else 'no'}")
    assert not wrong, "\n".join(wrong)


# -- plain manifests -----------------------------------------------------------------------


def _objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _snapshot(cluster: Cluster, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The live objects, without what differs between any two creations of them."""
    volatile_annotations = ("kubectl.kubernetes.io/last-applied-configuration",
                            "deployment.kubernetes.io/revision", "meta.helm.sh/release-name",
                            "meta.helm.sh/release-namespace")
    found = {}
    for obj in objects:
        meta = obj["metadata"]
        args = [obj["kind"].lower() + "." + obj["apiVersion"].split("/")[0]
                if "/" in obj["apiVersion"] else obj["kind"].lower(), meta["name"]]
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        live = get_json(cluster, *args)
        live.pop("status", None)
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
            live["metadata"].pop(key, None)
        annotations = live["metadata"].get("annotations", {})
        for key in volatile_annotations:
            annotations.pop(key, None)
        if not annotations:
            live["metadata"].pop("annotations", None)
        if obj["kind"] == "Service":
            for key in ("clusterIP", "clusterIPs"):
                live["spec"].pop(key, None)
        found[f"{obj['kind']}/{meta['name']}"] = live
    return found


def test_kubectl_apply_of_the_plain_manifests_gives_the_same_objects_as_the_chart(
    cluster: Cluster, crds: Cluster
) -> None:
    # deploy/ is fixed to release "ponder" in namespace "ponder-system", and its
    # ClusterKopfPeering "ponder" is the one the other operator tests meet in: Helm takes it
    # over, and it is put back afterwards.
    objects = _objects(REPO / "deploy" / "ponder.yaml")
    namespace = "ponder-system"
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
        cluster.kubectl("apply", "-f", str(REPO / "deploy"))
        eventually(lambda: deployment_ready(cluster, namespace, "ponder", 2),
                   timeout_seconds=30, what="operator from deploy/ ready")
        plain = _snapshot(cluster, objects)

        removable = [o for o in objects if o["kind"] != "ClusterKopfPeering"]
        cluster.kubectl("delete", "--wait", "-f", "-", input_text=yaml.safe_dump_all(removable))
        cluster.helm("install", "ponder", str(CHART), "-n", namespace, "--take-ownership",
                     "--wait", "--timeout", "60s")
        charted = _snapshot(cluster, objects)
    finally:
        cluster.helm("uninstall", "ponder", "-n", namespace, "--wait", check=False)
        cluster.kubectl("delete", "-f", str(REPO / "deploy"), "--ignore-not-found", "--wait=false")
        cluster.kubectl("apply", "-f", "-", input_text=json.dumps({
            "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
            "metadata": {"name": "ponder"}}))
    assert len(plain) == len(objects)
    assert sorted(charted) == sorted(plain)
    for key, live in plain.items():
        assert charted[key] == live, key
