"""The generated CRD, applied to a real kube-apiserver, refuses what parse_spec refuses.

Each invalid ReasoningService is sent through ``kubectl apply --validate=strict``; the API
server must reject it with a message naming the same field that ``parse_spec`` names
offline. Valid examples are accepted, defaulted the way the models default, listed with
the printer columns and scaled through the scale subresource.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ponder_localstack.cluster import Cluster
from ponder_operator.api import (
    Condition,
    ConditionType,
    Reason,
    ReasoningServiceStatus,
    parse_spec,
)
from ponder_operator.api.crd import CRD_NAME
from ponder_operator.errors import SpecError

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / f"{CRD_NAME}.yaml"
EXAMPLES = ROOT / "examples"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> Cluster:
    """The cluster with the ReasoningService CRD established and served."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}",
                    "--timeout=60s")
    deadline = time.monotonic() + 30
    while cluster.run_tool("kubectl", "get", "rsvc", "-A", check=False).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail("the rsvc resource never became discoverable")
        time.sleep(0.2)
    return cluster


@pytest.fixture(scope="module")
def namespace(crd: Cluster) -> Iterator[str]:
    """One namespace for the module: the shared per-test fixture derives its name from the
    test's name cut to 40 characters, which parametrized tests share (and ``[`` is invalid)."""
    name = "crd-validation"
    crd.kubectl("create", "namespace", name)
    yield name
    crd.kubectl("delete", "namespace", name, "--wait=false")


def valid_service(name: str = "svc") -> Manifest:
    return {
        "apiVersion": "ponder.dev/v1alpha1",
        "kind": "ReasoningService",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "tiny", "repository": {"configMap": {"name": "tiny-model"}}},
            "resources": {"gpusPerReplica": 2, "gpuProduct": "NVIDIA-L4"},
            "scaling": {"minReplicas": 1, "maxReplicas": 3},
            "budgets": {
                "tiers": [
                    {"name": "easy", "maxDifficulty": 0.4, "maxTokens": 1024},
                    {"name": "hard", "maxDifficulty": 1.0, "maxTokens": 8192,
                     "maxSamples": 8, "initialSamples": 2, "strategy": "vote"},
                ],
                "effort": {"low": "easy", "high": "hard"},
            },
        },
    }


def edit(path: str, value: Any) -> Callable[[Manifest], None]:
    """Set ``spec.<path>`` (dots and [i] indices) to ``value``."""
    def apply(manifest: Manifest) -> None:
        parts = path.replace("]", "").replace("[", ".").split(".")
        node: Any = manifest["spec"]
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = parts[-1]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return apply


INVALID = [
    pytest.param(edit("scaling.minReplicas", 5), "spec.scaling.minReplicas",
                 "minReplicas must not exceed maxReplicas", id="minReplicas-above-maxReplicas"),
    pytest.param(edit("budgets.tiers[0].maxDifficulty", 1.0), "spec.budgets.tiers",
                 "strictly increasing maxDifficulty", id="tiers-out-of-order"),
    pytest.param(edit("budgets.tiers[1].maxDifficulty", 0.9), "spec.budgets.tiers",
                 "maxDifficulty must be 1", id="last-tier-below-one"),
    pytest.param(edit("budgets.tiers[1].initialSamples", 9),
                 "spec.budgets.tiers[1].initialSamples",
                 "initialSamples must not exceed maxSamples", id="initialSamples-above-maxSamples"),
    pytest.param(edit("budgets.tiers[0].maxTokens", -1), "spec.budgets.tiers[0].maxTokens",
                 "greater than or equal to 1", id="negative-maxTokens"),
    pytest.param(edit("scaling.maxReplica", 3), "spec.scaling.maxReplica", "",
                 id="unknown-field"),
    pytest.param(edit("budgets.tiers[1].strategy", "majority"),
                 "spec.budgets.tiers[1].strategy", "", id="unknown-strategy"),
    pytest.param(edit("model.repository.pvc", {"claimName": "models"}),
                 "spec.model.repository", "exactly one of pvc, uri and configMap",
                 id="two-repository-sources"),
    pytest.param(edit("scaling.maxGpus", 1), "spec.scaling.maxGpus",
                 "at least resources.gpusPerReplica", id="maxGpus-below-gpusPerReplica"),
    pytest.param(edit("budgets.effort.high", "extreme"), "spec.budgets.effort.high",
                 "effort.high must name a tier in tiers", id="effort-names-missing-tier"),
    pytest.param(edit("budgets.tiers[1].name", "easy"), "spec.budgets.tiers",
                 "", id="duplicate-tier-names"),
    pytest.param(edit("cost", {"gpuHourlyPrice": 2.5, "pricing": {"cloud": "aws",
                                                                   "gpuType": "H100"}}),
                 "spec.cost.pricing", "at most one of gpuHourlyPrice and pricing",
                 id="price-and-pricing"),
    pytest.param(edit("resources.memory", "lots"), "spec.resources.memory", "",
                 id="memory-not-a-quantity"),
    pytest.param(edit("budgets.tiers[1].verifierModel", "my verifier"),
                 "spec.budgets.tiers[1].verifierModel", "", id="verifier-model-with-a-space"),
    pytest.param(edit("budgets.estimator", {"bias": 0.0, "coefficients": {"sentiment": 1.0}}),
                 "spec.budgets.estimator.coefficients",
                 "coefficients must name features the router extracts",
                 id="estimator-weighs-an-unknown-feature"),
    pytest.param(edit("answers", {"extractor": "regex", "pattern": r"A:\s*\S+"}),
                 "spec.answers.pattern", "exactly one capture group",
                 id="pattern-without-a-capture-group"),
    pytest.param(edit("answers", {"extractor": "regex", "pattern": r"(A):\s*(\S+)"}),
                 "spec.answers.pattern", "exactly one capture group",
                 id="pattern-with-two-capture-groups"),
    pytest.param(edit("answers", {"extractor": "regex", "pattern": r"A:\s*((\S+)"}),
                 "spec.answers.pattern", "a regular expression", id="pattern-unbalanced"),
    pytest.param(edit("answers", {"extractor": "regex", "pattern": r"(?:\w+\s?)+(\d)"}),
                 "spec.answers.pattern", "exponential", id="pattern-nested-repeat"),
    pytest.param(edit("answers", {"extractor": "regex"}), "spec.answers.pattern",
                 "pattern is required with extractor regex", id="regex-without-pattern"),
    pytest.param(edit("answers", {"pattern": "(x)"}), "spec.answers.pattern",
                 "pattern is required with extractor regex", id="pattern-without-regex"),
    pytest.param(edit("answers", {"extractor": "magic"}), "spec.answers.extractor", "",
                 id="unknown-extractor"),
    pytest.param(edit("budgets.probes", {"enabled": True, "intervalTokens": 0}),
                 "spec.budgets.probes.intervalTokens", "greater than or equal to 1",
                 id="probe-interval-zero"),
    pytest.param(edit("budgets.probes", {"enabled": True, "agreement": 0}),
                 "spec.budgets.probes.agreement", "greater than or equal to 1",
                 id="probe-agreement-zero"),
    pytest.param(edit("budgets.forcing", {"cue": ""}), "spec.budgets.forcing.cue", "",
                 id="forcing-cue-empty"),
    pytest.param(edit("budgets.probes", {"enabled": True, "cue": ""}),
                 "spec.budgets.probes.cue", "at least 1", id="probe-cue-empty"),
    pytest.param(edit("budgets.probes", {"enabled": True, "stop": ["}", ""]}),
                 "spec.budgets.probes.stop[1]", "at least 1", id="probe-stop-string-empty"),
    pytest.param(edit("budgets.confidence", {"cancel": True, "percentile": 150}),
                 "spec.budgets.confidence.percentile", "less than 100",
                 id="confidence-percentile-above-100"),
    pytest.param(edit("budgets.prior", {"enabled": True, "learningRate": 0}),
                 "spec.budgets.prior.learningRate", "",
                 id="prior-learning-rate-zero"),
]


@pytest.mark.parametrize(("change", "field_path", "message"), INVALID)
def test_api_server_rejects_invalid_spec_naming_the_field(
    crd: Cluster, namespace: str, request: pytest.FixtureRequest,
    change: Callable[[Manifest], None], field_path: str, message: str,
) -> None:
    manifest = copy.deepcopy(valid_service(f"bad-{request.node.callspec.id}".lower()))
    change(manifest)

    with pytest.raises(SpecError) as offline:
        parse_spec(manifest)
    result = crd.run_tool("kubectl", "apply", "--validate=strict", "-n", namespace,
                          "-f", "-", input_text=yaml.safe_dump(manifest), check=False)

    assert result.returncode != 0, f"the API server accepted it:\n{result.stdout}"
    assert offline.value.field_path.startswith(field_path)
    assert field_path in result.stderr, result.stderr
    assert message in result.stderr, result.stderr
    assert message in str(offline.value)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_api_server_defaults_examples_as_the_models_do(
    crd: Cluster, namespace: str, example: Path
) -> None:
    manifest = yaml.safe_load(example.read_text())

    crd.kubectl("apply", "--validate=strict", "-n", namespace, "-f", str(example))
    stored = json.loads(crd.kubectl("get", "rsvc", manifest["metadata"]["name"],
                                    "-n", namespace, "-o", "json"))

    assert parse_spec(stored) == parse_spec(manifest)
    assert stored["spec"]["scaling"]["intervalSeconds"] == manifest["spec"].get(
        "scaling", {}).get("intervalSeconds", 5)


def test_api_server_accepts_estimator_weights_over_known_features(
    crd: Cluster, namespace: str
) -> None:
    manifest = valid_service("weighted")
    manifest["spec"]["budgets"]["estimator"] = {
        "bias": -3, "coefficients": {"log_chars": 0.5, "easy_keywords": -1.25}}

    crd.kubectl("apply", "--validate=strict", "-n", namespace, "-f", "-",
                input_text=yaml.safe_dump(manifest))
    stored = json.loads(crd.kubectl("get", "rsvc", "weighted", "-n", namespace, "-o", "json"))

    assert parse_spec(stored) == parse_spec(manifest)
    assert stored["spec"]["budgets"]["estimator"]["coefficients"]["easy_keywords"] == -1.25


def test_api_server_accepts_a_regex_answer_pattern_with_one_capture_group(
    crd: Cluster, namespace: str
) -> None:
    manifest = valid_service("dated")
    manifest["spec"]["answers"] = {"extractor": "regex", "pattern": r"(?i)A:\s*\(?([^()\s]+)",
                                   "equality": "text"}

    crd.kubectl("apply", "--validate=strict", "-n", namespace, "-f", "-",
                input_text=yaml.safe_dump(manifest))
    stored = json.loads(crd.kubectl("get", "rsvc", "dated", "-n", namespace, "-o", "json"))

    assert parse_spec(stored) == parse_spec(manifest)
    assert stored["spec"]["answers"]["pattern"] == r"(?i)A:\s*\(?([^()\s]+)"


def test_get_shows_printer_columns_and_status(crd: Cluster, namespace: str) -> None:
    crd.kubectl_apply([{**valid_service("cols"), "metadata": {"name": "cols",
                                                               "namespace": namespace}}])
    now = datetime.now(UTC).replace(microsecond=0)
    status = ReasoningServiceStatus(
        observed_generation=1, replicas=2, ready_replicas=1, desired_replicas=3,
        selector="app.kubernetes.io/instance=cols", hourly_cost=4.5, gpu_hours=0.25,
        cost=1.125, gpu_seconds_total=900.0, at_ceiling=False, last_scale_time=now,
        last_scale_reason="demand 12000 tokens over 30 s",
        conditions=(Condition(type=ConditionType.READY, status="False",
                              reason=Reason.REPLICAS_NOT_READY, message="1 of 2 ready",
                              last_transition_time=now, observed_generation=1),),
    )
    body = {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}

    crd.kubectl("patch", "rsvc", "cols", "-n", namespace, "--subresource=status",
                "--type=merge", "-p", json.dumps(body))
    table = crd.kubectl("get", "rsvc", "cols", "-n", namespace).splitlines()
    stored = json.loads(crd.kubectl("get", "rsvc", "cols", "-n", namespace, "-o", "json"))

    assert table[0].split() == ["NAME", "READY", "REPLICAS", "DESIRED", "GPU", "COST/H", "AGE"]
    assert table[1].split()[:6] == ["cols", "1", "2", "3", "NVIDIA-L4", "4.5"]
    assert ReasoningServiceStatus.model_validate(stored["status"]) == status


def test_kubectl_scale_sets_the_manual_replica_count(crd: Cluster, namespace: str) -> None:
    crd.kubectl_apply([{**valid_service("scaled"), "metadata": {"name": "scaled",
                                                                 "namespace": namespace}}])

    crd.kubectl("scale", "rsvc", "scaled", "-n", namespace, "--replicas=3")
    stored = json.loads(crd.kubectl("get", "rsvc", "scaled", "-n", namespace, "-o", "json"))
    scale = json.loads(crd.kubectl("get", "rsvc", "scaled", "-n", namespace,
                                   "--subresource=scale", "-o", "json"))

    assert stored["spec"]["scaling"]["replicas"] == 3
    assert parse_spec(stored).scaling.replicas == 3
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3
