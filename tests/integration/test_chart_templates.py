"""The Helm chart renders what a platform team expects (``helm template``, no cluster).

Each test renders charts/ponder with the real helm binary and asserts on the objects: RBAC
without wildcards and exactly the verbs the operator uses, restricted-compliant pods,
optional monitoring objects, NetworkPolicies, the schema refusing typos; and deploy/ is
what hack/render-manifests.sh renders from the chart's default values.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import require
from ponder_localstack.paths import go_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ponder"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
RBAC_GROUP = "rbac.authorization.k8s.io"

pytestmark = pytest.mark.helm

# (apiGroup, resource) -> verbs: what the operator does against the API, found by running it
# under the ClusterRole and removing each verb in turn (tests/integration/test_chart_install.py
# runs it again and checks its log has no Forbidden).
OPERATOR_RULES = {
    ("ponder.dev", "reasoningservices"): {"get", "list", "watch", "patch"},
    ("ponder.dev", "reasoningservices/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("", "configmaps"): {"create", "patch"},
    ("", "services"): {"create", "patch"},
    ("", "serviceaccounts"): {"create", "patch"},
    (RBAC_GROUP, "roles"): {"create", "patch"},
    (RBAC_GROUP, "rolebindings"): {"create", "patch"},
    ("policy", "poddisruptionbudgets"): {"create", "patch"},
    ("", "pods"): {"get", "list", "watch", "patch"},
    ("", "nodes"): {"list", "watch"},
    ("", "events"): {"create"},
    ("kopf.dev", "clusterkopfpeerings"): {"list", "watch", "patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("monitoring.coreos.com", "servicemonitors"): {"create", "patch"},
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return require(lambda: go_tool("helm"))


@functools.cache
def _template(helm: Path, args: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [str(helm), "template", "ponder", str(CHART), "--namespace", "ponder-system", *args],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(helm: Path, *args: str) -> list[dict[str, Any]]:
    """The chart's objects for these helm arguments (``-f``, ``--set``)."""
    return list(_template(helm, args))


def scenario(name: str) -> tuple[str, str]:
    return ("-f", str(CHART / "ci" / name))


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for o in objects:
        if o["kind"] == "Pod":
            specs.append((f"Pod/{o['metadata']['name']}", o["spec"]))
        elif o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            specs.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
    return specs


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# -- lint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["(defaults)", *SCENARIOS])
def test_helm_lint_strict_passes(helm: Path, values: str) -> None:
    args = [] if values == "(defaults)" else list(scenario(values))
    result = subprocess.run([str(helm), "lint", "--strict", str(CHART), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- defaults ------------------------------------------------------------------------------


def test_should_run_two_operator_replicas_peered_through_the_rendered_cluster_kopf_peering(
    helm: Path,
) -> None:
    objects = render(helm)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = env_of(deployment)
    assert env["PONDER_STANDALONE"] == "0"
    peering = one(objects, "ClusterKopfPeering")
    assert env["PONDER_PEERING_NAME"] == peering["metadata"]["name"] == "ponder"
    custom = render(helm, "--set", "peering.name=ponder-blue")
    assert one(custom, "ClusterKopfPeering")["metadata"]["name"] == "ponder-blue"
    assert env_of(one(custom, "Deployment"))["PONDER_PEERING_NAME"] == "ponder-blue"


def test_should_run_the_operator_with_its_health_endpoint_on_the_pod_address(
    helm: Path,
) -> None:
    deployment = one(render(helm), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = env_of(deployment)
    assert container["command"] == ["ponder-operator"]
    assert env["PONDER_HEALTH_HOST"] == "0.0.0.0"
    health_port = int(env["PONDER_HEALTH_PORT"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == health_port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env["PONDER_ROUTER_IMAGE"] == container["image"] == "ghcr.io/ponder-dev/ponder:0.1.0"


def test_should_pin_the_image_by_digest_when_one_is_given(helm: Path) -> None:
    digest = "sha256:" + "a" * 64
    deployment = one(render(helm, "--set", f"image.digest={digest}"), "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/ponder-dev/ponder@{digest}"


def test_should_render_no_monitoring_objects_by_default(helm: Path) -> None:
    assert kinds(render(helm)) == sorted([
        "ClusterKopfPeering", "ClusterRole", "ClusterRoleBinding", "Deployment", "Pod",
        "PodDisruptionBudget", "Service", "ServiceAccount",
    ])


def test_should_not_render_the_service_monitor_when_monitoring_is_disabled(
    helm: Path,
) -> None:
    found = kinds(render(helm, "--set", "metrics.serviceMonitor.enabled=false"))
    assert "ServiceMonitor" not in found
    assert "PodMonitor" not in found
    assert "PrometheusRule" not in found


def test_should_render_the_monitoring_objects_when_monitoring_is_enabled(helm: Path) -> None:
    objects = render(helm, *scenario("monitoring-values.yaml"))
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True, "per-service labels kept"
    service = one(objects, "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"metrics", "health"}
    routers = one(objects, "PodMonitor", "ponder-routers")
    assert routers["spec"]["selector"]["matchLabels"]["ponder.dev/component"] == "router"
    assert routers["spec"]["namespaceSelector"] == {"any": True}
    relabel = routers["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
    assert relabel["targetLabel"] == "reasoningservice"
    alerts = {r["alert"] for g in one(objects, "PrometheusRule")["spec"]["groups"]
              for r in g["rules"]}
    assert alerts == {"PonderOperatorDown", "PonderReasoningServiceDegraded",
                      "PonderReasoningServiceUnschedulable", "PonderRouterRejecting"}
    dashboard = one(objects, "ConfigMap", "ponder-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["ponder.json"])["uid"] == "ponder-overview"


def test_should_label_triton_series_with_the_service_the_autoscaler_reads_them_by(
    helm: Path,
) -> None:
    triton = one(render(helm, *scenario("monitoring-values.yaml")), "PodMonitor", "ponder-triton")
    assert triton["spec"]["selector"]["matchLabels"]["ponder.dev/component"] == "triton"
    endpoint = triton["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "metrics"
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_ponder_dev_service"],
            "targetLabel": "ponder_service"} in endpoint["relabelings"]
    without = render(helm, *scenario("monitoring-values.yaml"),
                     "--set", "metrics.podMonitor.triton=false")
    assert [o["metadata"]["name"] for o in without if o["kind"] == "PodMonitor"] == [
        "ponder-routers"]


# -- RBAC ----------------------------------------------------------------------------------


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for o in objects if o["kind"] in {"ClusterRole", "Role"}
            for rule in o.get("rules", [])]


@pytest.mark.parametrize("values", SCENARIOS)
def test_should_grant_no_wildcard_verbs_resources_or_groups(helm: Path, values: str) -> None:
    for rule in _rules(render(helm, *scenario(values))):
        for key in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"


def test_should_grant_exactly_the_verbs_the_operator_uses(helm: Path) -> None:
    role = one(render(helm), "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == OPERATOR_RULES


def test_should_never_grant_secrets_deletes_or_privilege_escalation(helm: Path) -> None:
    for rule in _rules(render(helm, *scenario("monitoring-values.yaml"))):
        assert "secrets" not in rule["resources"]
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate",
                    "update"} & set(rule["verbs"]), rule


def test_should_bind_the_cluster_role_to_the_operator_service_account(helm: Path) -> None:
    objects = render(helm)
    binding = one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": account["metadata"]["name"],
                                    "namespace": "ponder-system"}]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == \
        account["metadata"]["name"]


def test_should_render_no_rbac_when_rbac_creation_is_off(helm: Path) -> None:
    found = kinds(render(helm, "--set", "rbac.create=false"))
    assert "ClusterRole" not in found
    assert "ClusterRoleBinding" not in found


# -- pod security --------------------------------------------------------------------------


@pytest.mark.parametrize("values", SCENARIOS)
def test_should_run_every_container_as_non_root_with_a_read_only_root_filesystem(
    helm: Path, values: str
) -> None:
    for where, spec in pod_specs(render(helm, *scenario(values))):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] == 65532, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["runAsNonRoot"] is True, where


@pytest.mark.parametrize("values", SCENARIOS)
def test_should_set_requests_and_limits_on_every_container(helm: Path, values: str) -> None:
    for where, spec in pod_specs(render(helm, *scenario(values))):
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where


def test_should_label_the_namespace_for_the_restricted_pod_security_standard_when_asked(
    helm: Path,
) -> None:
    assert "Namespace" not in kinds(render(helm))
    namespace = one(render(helm, "--set", "podSecurity.manageNamespace=true"), "Namespace")
    assert namespace["metadata"]["name"] == "ponder-system"
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# -- operator options ----------------------------------------------------------------------


def test_should_mount_the_pricing_table_and_point_the_operator_at_it(helm: Path) -> None:
    objects = render(helm, *scenario("ha-values.yaml"))
    deployment = one(objects, "Deployment")
    table = one(objects, "ConfigMap", "ponder-pricing")
    assert "aws,p5.48xlarge,H100" in table["data"]["gpu_prices.csv"]
    assert env_of(deployment)["PONDER_PRICING_FILE"] == "/etc/ponder/pricing/gpu_prices.csv"
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "pricing", "configMap": {"name": "ponder-pricing"}} in pod["volumes"]


def test_should_roll_the_operator_when_the_pricing_table_changes(helm: Path) -> None:
    def checksum(csv: str) -> str:
        deployment = one(render(helm, "--set-json", f"pricing.csv={json.dumps(csv)}"),
                         "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]
                   ["checksum/pricing"])

    assert checksum("cloud,accelerator\naws,H100") != checksum("cloud,accelerator\naws,L4")


def test_should_refuse_several_replicas_without_peering(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "template", "ponder", str(CHART), "--set", "peering.enabled=false"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "needs peering.enabled" in result.stderr
    standalone = one(render(helm, *scenario("minimal-values.yaml")), "Deployment")
    assert env_of(standalone)["PONDER_STANDALONE"] == "1"
    assert "PONDER_PEERING_NAME" not in env_of(standalone)


def test_should_render_a_sample_service_the_operator_accepts(helm: Path) -> None:
    from ponder_operator.api.spec import parse_spec

    sample = one(render(helm, *scenario("sample-values.yaml")), "ReasoningService")
    spec = parse_spec(sample)
    assert spec.resources.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert spec.cost.gpu_hourly_price == 3.5


def test_the_helm_test_pod_checks_the_operator_health_endpoint_through_its_service(
    helm: Path,
) -> None:
    objects = render(helm)
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    service = one(objects, "Service")
    health = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "health")
    assert f"http://ponder.ponder-system.svc:{health}/healthz" in script


# -- network policies ----------------------------------------------------------------------


def test_should_let_only_the_routers_reach_triton_inference_ports(helm: Path) -> None:
    objects = render(helm, *scenario("ha-values.yaml"))
    triton = one(objects, "NetworkPolicy", "ponder-triton")
    assert triton["spec"]["podSelector"] == {"matchLabels": {"ponder.dev/component": "triton"}}
    inference, metrics = triton["spec"]["ingress"]
    assert inference["from"] == [{"podSelector": {"matchLabels":
                                                  {"ponder.dev/component": "router"}}}]
    assert {p["port"] for p in inference["ports"]} == {8000, 8001}
    assert [p["port"] for p in metrics["ports"]] == [8002]
    assert "namespaceSelector" in metrics["from"][0]


def test_should_let_only_allowed_clients_reach_the_routers(helm: Path) -> None:
    objects = render(helm, *scenario("ha-values.yaml"))
    router = one(objects, "NetworkPolicy", "ponder-router")
    (rule,) = router["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [8080]
    assert {"namespaceSelector": {"matchLabels": {"ponder.dev/clients": "true"}}} in rule["from"]
    assert len(rule["from"]) == 3  # routers, Prometheus, the allowed clients


def test_should_render_policies_in_every_listed_namespace(helm: Path) -> None:
    objects = render(helm, "--set", "networkPolicy.enabled=true",
                     "--set", "networkPolicy.namespaces={team-a,team-b}")
    placed = sorted((o["metadata"]["namespace"], o["metadata"]["name"])
                    for o in objects if o["kind"] == "NetworkPolicy")
    assert placed == [("ponder-system", "ponder"),
                      ("team-a", "ponder-router"), ("team-a", "ponder-triton"),
                      ("team-b", "ponder-router"), ("team-b", "ponder-triton")]


# -- values and schema ---------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "named"), [
    ("operator.replica=3", "'replica'"),
    ("metrics.serviceMonitor.enable=true", "'enable'"),
    ("operator.logLevel=LOUD", "/operator/logLevel"),
    ("operator.replicas=0", "/operator/replicas"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
])
def test_a_values_typo_is_rejected_with_a_message_naming_it(
    helm: Path, setting: str, named: str
) -> None:
    result = subprocess.run(
        [str(helm), "template", "ponder", str(CHART), "--set", setting],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr


def _objects_in(node: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append((path, node))
        for key, value in node.items():
            found += _objects_in(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _objects_in(value, f"{path}/{index}")
    return found


def test_every_object_in_the_values_schema_refuses_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    objects = _objects_in(schema)
    assert len(objects) > 20
    for path, node in objects:
        assert node.get("additionalProperties") is False, path


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^\s*(- )?[\w.\-/\"]+:( |$)")
    for number, line in enumerate(lines):
        if not key.match(line) or line.lstrip().startswith("#"):
            continue
        above = lines[number - 1].strip() if number else ""
        assert above.startswith("#"), f"values.yaml:{number + 1} has no comment: {line}"


def test_every_value_in_values_yaml_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def check(value: Any, node: dict[str, Any], path: str) -> None:
        if "allOf" in node:
            node = node["allOf"][0]
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(value, dict) and "properties" in node:
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key} is not in the schema"
                check(sub, node["properties"][key], f"{path}.{key}")

    check(values, schema, "values")


def test_the_plain_manifests_are_what_the_chart_renders_with_default_values(
    helm: Path, tmp_path: Path,
) -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "render-manifests.sh"), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HELM": str(helm)},
    )
    assert result.returncode == 0, result.stderr
    rendered = sorted(p.name for p in tmp_path.iterdir())
    assert rendered == sorted(p.name for p in (REPO / "deploy").iterdir())
    for name in rendered:
        assert (REPO / "deploy" / name).read_text() == (tmp_path / name).read_text(), (
            f"deploy/{name} is stale: run hack/render-manifests.sh")
