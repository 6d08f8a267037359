"""The children the operator renders, and the operator → router configuration contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ponder_operator.api.spec import parse_spec
from ponder_operator.reconcile import Capacity, initial_replicas, render_children
from ponder_operator.render import (
    Owner,
    RenderOptions,
    render_router_config,
    render_router_deployment,
)
from ponder_router.aggregate import StopRuleKind
from ponder_router.settings import RouterConfig

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
OWNER = Owner(name="math", namespace="ml", uid="0000-1111")


def example_specs() -> list[Any]:
    specs = []
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ReasoningService":
                specs.append(pytest.param(parse_spec(doc), id=path.stem))
    return specs


@pytest.mark.parametrize("spec", example_specs())
def test_the_rendered_router_config_is_accepted_by_the_routers_own_model(spec: Any) -> None:
    config = render_router_config(OWNER, spec, at_ceiling=True, replicas=3,
                                  escalation={t.escalate_to: "http://x-router.ml.svc"
                                              for t in spec.budgets.tiers if t.escalate_to})
    parsed = RouterConfig.model_validate(config)
    assert parsed.service == "math"
    assert [t.name for t in parsed.budgets.tiers] == [t.name for t in spec.budgets.tiers]
    assert parsed.capacity.at_ceiling is True


@pytest.mark.parametrize("spec", example_specs())
def test_every_shrink_step_the_spec_lists_reaches_the_router_in_order(spec: Any) -> None:
    escalation = {t.escalate_to: "http://x-router.ml.svc"
                  for t in spec.budgets.tiers if t.escalate_to}
    parsed = RouterConfig.model_validate(
        render_router_config(OWNER, spec, escalation=escalation))
    shrink = spec.budgets.shrink_under_load
    assert [str(s.resource) for s in parsed.budgets.shrink_order] == list(shrink.order)
    floors = {"agreement": shrink.min_lead, "samples": shrink.min_samples,
              "tokens": shrink.min_tokens}
    assert [s.floor for s in parsed.budgets.shrink_order] == [floors[r] for r in shrink.order]


def test_a_tiers_verifier_model_reaches_the_router() -> None:
    spec = parse_spec({
        "model": {"name": "m", "repository": {"configMap": {"name": "models"}}},
        "budgets": {"tiers": [
            {"name": "easy", "maxDifficulty": 0.5, "maxTokens": 256},
            {"name": "hard", "maxDifficulty": 1.0, "maxTokens": 1024, "maxSamples": 4,
             "initialSamples": 4, "strategy": "best-of-n", "verifierModel": "prm-1b"},
        ]},
    })  # fmt: skip
    parsed = RouterConfig.model_validate(render_router_config(OWNER, spec))
    assert [t.verifier_model for t in parsed.budgets.tiers] == [None, "prm-1b"]
    verifier = parsed.verifier_for("hard")
    assert verifier is not None
    assert verifier.model == "prm-1b"
    assert parsed.verifier_for("easy") is None


def test_tier_stop_thresholds_and_the_verifier_score_threshold_reach_the_router() -> None:
    spec = parse_spec({
        "model": {"name": "m", "repository": {"configMap": {"name": "models"}}},
        "budgets": {
            "tiers": [
                {"name": "mid", "maxDifficulty": 0.5, "maxTokens": 256, "maxSamples": 8,
                 "initialSamples": 2, "strategy": "vote", "stopThreshold": 0.8,
                 "stopMargin": 2},
                {"name": "hard", "maxDifficulty": 1.0, "maxTokens": 1024, "maxSamples": 4,
                 "initialSamples": 1, "strategy": "best-of-n", "verifierModel": "prm-1b"},
            ],
            "stopping": {"rule": "beta", "threshold": 0.95, "scoreThreshold": 2.5},
        },
    })  # fmt: skip
    parsed = RouterConfig.model_validate(render_router_config(OWNER, spec))
    assert [t.stop_threshold for t in parsed.budgets.tiers] == [0.8, None]
    assert [t.stop_margin for t in parsed.budgets.tiers] == [2, None]
    assert parsed.stopping.score_threshold == 2.5
    margin = parse_spec({
        "model": {"name": "m", "repository": {"configMap": {"name": "models"}}},
        "budgets": {"stopping": {"rule": "margin", "margin": 4}},
    })  # fmt: skip
    rule = RouterConfig.model_validate(render_router_config(OWNER, margin)).stopping
    assert (rule.kind, rule.margin) == (StopRuleKind.MARGIN, 4)
    unset = parse_spec({"model": {"name": "m", "repository": {"configMap": {"name": "c"}}}})
    assert RouterConfig.model_validate(render_router_config(OWNER, unset)).stopping \
        .score_threshold is None  # fmt: skip


def test_estimator_weights_reach_the_router_and_score_its_prompts() -> None:
    weights = {"bias": -2.0, "coefficients": {"log_chars": 0.5, "hard_keywords": 1.5}}
    spec = parse_spec({
        "model": {"name": "m", "repository": {"configMap": {"name": "models"}}},
        "budgets": {"estimator": weights},
    })  # fmt: skip
    parsed = RouterConfig.model_validate(render_router_config(OWNER, spec))
    assert parsed.budgets.estimator is not None
    assert parsed.budgets.estimator.model_dump() == weights
    assert parsed.budgets.feature_estimator().weights == parsed.budgets.estimator
    unset = parse_spec({"model": {"name": "m", "repository": {"configMap": {"name": "c"}}}})
    assert RouterConfig.model_validate(render_router_config(OWNER, unset)).budgets.estimator \
        is None  # fmt: skip


def test_the_prior_reaches_the_router_with_a_state_file_in_its_writable_volume() -> None:
    spec = parse_spec({
        "model": {"name": "m", "repository": {"configMap": {"name": "models"}}},
        "budgets": {"prior": {"warmRequests": 50, "learningRate": 0.1}},
    })  # fmt: skip
    prior = RouterConfig.model_validate(render_router_config(OWNER, spec)).prior
    deployment = render_router_deployment(OWNER, spec, RenderOptions())
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert (prior.warm_requests, prior.learning_rate) == (50, 0.1)
    assert prior.state_path is not None
    assert prior.state_path.startswith(mounts["state"] + "/")
    assert "emptyDir" in volumes["state"]


@pytest.mark.parametrize("spec", example_specs())
def test_every_child_is_owned_by_the_service_and_runs_hardened(spec: Any) -> None:
    children = render_children(OWNER, spec, RenderOptions(), Capacity())
    for child in children:
        refs = child["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == OWNER.uid
        assert refs[0]["controller"] is True
    for deployment in (c for c in children if c["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in [*pod["containers"], *pod.get("initContainers", ())]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("spec", example_specs())
def test_the_triton_deployment_leaves_replicas_to_the_autoscaler(spec: Any) -> None:
    triton = next(c for c in render_children(OWNER, spec, RenderOptions(), Capacity())
                  if c["metadata"]["name"] == "math-triton" and c["kind"] == "Deployment")
    assert "replicas" not in triton["spec"]
    limits = triton["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == str(spec.resources.gpus_per_replica)
    assert initial_replicas(spec) == spec.scaling.min_replicas


def test_the_service_monitor_is_rendered_only_when_the_cluster_serves_it() -> None:
    spec = example_specs()[0].values[0]
    kinds = {c["kind"] for c in render_children(OWNER, spec, RenderOptions(), Capacity())}
    assert "ServiceMonitor" not in kinds
    kinds = {c["kind"] for c in render_children(
        OWNER, spec, RenderOptions(service_monitor=True), Capacity())}
    assert "ServiceMonitor" in kinds
