"""What the chart ships beside its templates stays in sync with its sources.

- charts/ponder/crds/ holds exactly the repository's generated crds/ (Helm installs these);
- deploy/ is what hack/render-manifests.sh renders from the chart's default values.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from components import require
from ponder_localstack.paths import go_tool

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


def test_the_plain_manifests_are_what_the_chart_renders_with_default_values(
    tmp_path: Path,
) -> None:
    helm = require(lambda: go_tool("helm"))
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


@pytest.mark.parametrize("kind", ["Deployment", "ClusterRole", "ClusterKopfPeering",
                                  "ServiceAccount", "Service", "Namespace"])
def test_the_plain_manifests_hold_the_operator_and_its_namespace(kind: str) -> None:
    docs = [d for p in sorted((REPO / "deploy").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]
    assert kind in {d["kind"] for d in docs}
    assert all(d["metadata"].get("namespace", "ponder-system") == "ponder-system" for d in docs)
    assert "Pod" not in {d["kind"] for d in docs}, "helm test pods stay out of deploy/"
