"""What the chart ships beside its templates stays in sync with its sources.

- charts/ponder/crds/ holds exactly the repository's generated crds/ (Helm installs these);
- deploy/ holds the operator and its namespace (that it is what hack/render-manifests.sh
  renders from the chart needs helm: tests/integration/test_chart_templates.py);
- the kube-state-metrics configuration reads fields the CRD has.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ponder_operator.api.crd import crd

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ponder"


def test_the_chart_ships_the_generated_crds_unchanged() -> None:
    generated = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert sorted(shipped) == sorted(generated)
    for name, text in generated.items():
        assert shipped[name] == text, (
            f"charts/ponder/crds/{name} differs from crds/{name}: "
            "cp crds/*.yaml charts/ponder/crds/")


def test_the_chart_is_versioned_as_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0"


@pytest.mark.parametrize("kind", ["Deployment", "ClusterRole", "ClusterKopfPeering",
                                  "ServiceAccount", "Service", "Namespace"])
def test_the_plain_manifests_hold_the_operator_and_its_namespace(kind: str) -> None:
    docs = [d for p in sorted((REPO / "deploy").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]
    assert kind in {d["kind"] for d in docs}
    assert all(d["metadata"].get("namespace", "ponder-system") == "ponder-system" for d in docs)
    assert "Pod" not in {d["kind"] for d in docs}, "helm test pods stay out of deploy/"


def test_the_kube_state_metrics_configuration_reads_fields_the_crd_has() -> None:
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    config = yaml.safe_load((CHART / "files" / "kube-state-metrics.yaml").read_text())
    paths = [m["each"]["gauge"]["path"] for m in config["spec"]["resources"][0]["metrics"]]
    assert any(path[0] == "status" for path in paths)
    for path in paths:
        node = root
        for part in path:
            assert part in node.get("properties", {}), f"{'.'.join(path)}: no field {part}"
            node = node["properties"][part]
