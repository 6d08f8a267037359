"""The CRD's budget, stopping, admission and shrink sections and the router's config agree.

``spec.budgets.stopping`` and ``spec.router.admission`` are the router's own models; the
tiers, effort mapping, shrink and estimator keep their CRD shape, so these tests walk both
JSON schemas field by field: every CRD field has its router counterpart under the same
camelCase name, the same type and enum values the router accepts, bounds inside the
router's, and the same defaults; and a service without ``budgets`` gets the router's
documented default policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ponder_operator.api.spec import (
    AdmissionSpec,
    BudgetsSpec,
    BudgetTier,
    EffortMapping,
    EstimatorSpec,
    ReasoningServiceSpec,
    RouterSpec,
    ShrinkUnderLoad,
    StoppingSpec,
)
from ponder_operator.render import Owner, render_router_config
from ponder_router.affinity import AffinityConfig
from ponder_router.aggregate import StopRule
from ponder_router.budgets import (
    BudgetPolicy,
    Effort,
    ShrinkResource,
    ShrinkStep,
    Tier,
    default_policy,
)
from ponder_router.confidence import ConfidenceConfig
from ponder_router.demand_learning import DemandLearningConfig
from ponder_router.difficulty import EstimatorWeights
from ponder_router.forcing import ForcingConfig
from ponder_router.prior import PriorConfig
from ponder_router.probes import ProbeConfig
from ponder_router.settings import AdmissionConfig, RouterConfig, load_config

OWNER = Owner(name="math", namespace="ml", uid="uid-1")
MODEL = {"name": "qwen", "repository": {"pvc": {"claimName": "models"}}}

# Each CRD budgets field and where the router keeps it; a new CRD field fails until added.
BUDGETS_FIELDS = {
    "tiers": "tiers",
    "effort": "effortTiers",
    "stopping": "stopping (RouterConfig, the same model)",
    "forcing": "forcing (RouterConfig, the same model)",
    "probes": "probes (RouterConfig, the same model)",
    "confidence": "confidence (RouterConfig, the same model)",
    "prior": "prior (RouterConfig, the same model plus its state path)",
    "demandLearning": "demandLearning (RouterConfig, the same model)",
    "shrinkUnderLoad": "shrinkOrder",
    "estimator": "estimator",
}
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, mode="validation")


def _fields(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each property by its wire name, ``Optional`` unwrapped and enum ``$ref`` inlined."""
    schema = _schema(model)
    defs = schema.get("$defs", {})
    out = {}
    for name, node in schema["properties"].items():
        branches = [b for b in node.get("anyOf", [node]) if b != {"type": "null"}]
        resolved = {**branches[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        ref = resolved.pop("$ref", None)
        if ref is not None:
            resolved = {**defs[ref.rsplit("/", 1)[-1]], **resolved}
        out[name] = resolved
    return out


def _bounds(node: dict[str, Any]) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
    """(lower, exclusive) and (upper, exclusive), None where unbounded."""
    lower = ((node["exclusiveMinimum"], True) if "exclusiveMinimum" in node
             else (node["minimum"], False) if "minimum" in node else None)
    upper = ((node["exclusiveMaximum"], True) if "exclusiveMaximum" in node
             else (node["maximum"], False) if "maximum" in node else None)
    return lower, upper


def _inside(crd: dict[str, Any], router: dict[str, Any]) -> list[str]:
    """Why the CRD's bounds let through a value the router refuses (empty: they don't)."""
    problems = []
    (crd_low, crd_high), (low, high) = _bounds(crd), _bounds(router)
    if low is not None and (crd_low is None or crd_low[0] < low[0]
                            or (crd_low[0] == low[0] and low[1] and not crd_low[1])):
        problems.append(f"lower bound {crd_low} below the router's {low}")
    if high is not None and (crd_high is None or crd_high[0] > high[0]
                             or (crd_high[0] == high[0] and high[1] and not crd_high[1])):
        problems.append(f"upper bound {crd_high} above the router's {high}")
    return problems


def _agree(crd_model: type[BaseModel], router_model: type[BaseModel]) -> list[str]:
    """Field-by-field differences that would let the CRD accept what the router refuses."""
    crd, router = _fields(crd_model), _fields(router_model)
    problems = [f"{name}: not in the router's {router_model.__name__}"
                for name in crd.keys() - router.keys()]
    for name in crd.keys() & router.keys():
        c, r = crd[name], router[name]
        if c.get("type") != r.get("type"):
            problems.append(f"{name}: type {c.get('type')} vs {r.get('type')}")
        if "enum" in c and not set(c["enum"]) <= set(r.get("enum", c["enum"])):
            problems.append(f"{name}: values {c['enum']} vs {r['enum']}")
        if "default" in c and "default" in r and c["default"] != r["default"]:
            problems.append(f"{name}: default {c['default']} vs {r['default']}")
        problems += [f"{name}: {p}" for p in _inside(c, r)]
    return problems


def test_the_crd_tier_agrees_with_the_routers_tier_field_by_field() -> None:
    assert _agree(BudgetTier, Tier) == []
    assert _fields(BudgetTier).keys() == _fields(Tier).keys()


def test_the_crd_estimator_agrees_with_the_routers_weights() -> None:
    assert _fields(EstimatorSpec).keys() == _fields(EstimatorWeights).keys()
    assert _agree(EstimatorSpec, EstimatorWeights) == []


def test_every_crd_budgets_field_has_its_place_in_the_router_config() -> None:
    router = _fields(BudgetPolicy).keys() | {"stopping (RouterConfig, the same model)",
                                             "forcing (RouterConfig, the same model)",
                                             "probes (RouterConfig, the same model)",
                                             "confidence (RouterConfig, the same model)",
                                             "prior (RouterConfig, the same model plus its "
                                             "state path)",
                                             "demandLearning (RouterConfig, the same model)"}

    assert _fields(BudgetsSpec).keys() == BUDGETS_FIELDS.keys()
    assert set(BUDGETS_FIELDS.values()) <= router
    assert _fields(BudgetsSpec)["tiers"]["maxItems"] <= _fields(BudgetPolicy)["tiers"]["maxItems"]


def test_effort_levels_are_the_routers_efforts_without_auto() -> None:
    assert set(_fields(EffortMapping)) == {e.value for e in Effort} - {Effort.AUTO.value}


def test_shrink_order_and_floors_are_what_the_routers_shrink_steps_take() -> None:
    crd = _fields(ShrinkUnderLoad)
    floor = _fields(ShrinkStep)["floor"]

    assert set(crd["order"]["items"]["enum"]) == {r.value for r in ShrinkResource}
    assert _inside(crd["minLead"], floor) == []
    assert _inside(crd["minSamples"], floor) == []
    assert _inside(crd["minTokens"], floor) == []


def test_stopping_and_admission_are_the_routers_own_models() -> None:
    assert StoppingSpec is StopRule
    assert AdmissionSpec is AdmissionConfig
    assert BudgetsSpec.model_fields["stopping"].annotation is StopRule
    assert RouterSpec.model_fields["admission"].annotation is AdmissionConfig
    assert RouterConfig.model_fields["stopping"].annotation is StopRule
    assert RouterConfig.model_fields["admission"].annotation is AdmissionConfig
    assert BudgetsSpec.model_fields["forcing"].annotation is ForcingConfig
    assert RouterConfig.model_fields["forcing"].annotation is ForcingConfig
    assert BudgetsSpec.model_fields["probes"].annotation is ProbeConfig
    assert RouterConfig.model_fields["probes"].annotation is ProbeConfig
    assert BudgetsSpec.model_fields["confidence"].annotation is ConfidenceConfig
    assert RouterConfig.model_fields["confidence"].annotation is ConfidenceConfig
    assert BudgetsSpec.model_fields["prior"].annotation is PriorConfig
    assert issubclass(RouterConfig.model_fields["prior"].annotation, PriorConfig)


@pytest.mark.parametrize("rule", ["beta", "window", "margin", "none"])
def test_every_stopping_rule_the_crd_documents_reaches_the_router(rule: str) -> None:
    spec = ReasoningServiceSpec.model_validate(
        {"model": MODEL, "budgets": {"stopping": {"rule": rule}}})

    config = RouterConfig.model_validate(render_router_config(OWNER, spec))

    assert config.stopping.kind.value == rule


def test_the_confidence_knobs_reach_the_router_as_written() -> None:
    knobs = {"weighting": True, "cancel": True, "percentile": 25.0, "window": 50,
             "minWindow": 20, "minTokens": 64}
    spec = ReasoningServiceSpec.model_validate({"model": MODEL,
                                                "budgets": {"confidence": knobs}})

    config = RouterConfig.model_validate(render_router_config(OWNER, spec))

    assert config.confidence == ConfidenceConfig.model_validate(knobs)


def test_the_demand_learning_knobs_reach_the_router_as_written() -> None:
    knobs = {"enabled": True, "windowRequests": 50, "priorRequests": 5}
    spec = ReasoningServiceSpec.model_validate({"model": MODEL,
                                                "budgets": {"demandLearning": knobs}})

    config = RouterConfig.model_validate(render_router_config(OWNER, spec))

    assert config.demand_learning == DemandLearningConfig.model_validate(knobs)
    assert BudgetsSpec.model_fields["demand_learning"].annotation \
        is DemandLearningConfig


def test_a_spec_at_every_crd_bound_renders_a_config_the_router_loads() -> None:
    spec = ReasoningServiceSpec.model_validate({"model": MODEL, "budgets": {
        "tiers": [
            {"name": "a", "maxDifficulty": 1e-9, "maxTokens": 1, "strategy": "single"},
            {"name": "b", "maxDifficulty": 1, "maxTokens": 1_000_000, "maxSamples": 64,
             "initialSamples": 64, "strategy": "best-of-n", "verifierModel": "prm",
             "stopThreshold": 0.999, "stopMargin": 64},
        ],
        "stopping": {"rule": "margin", "margin": 64, "window": 64, "scoreThreshold": -1e6},
        "shrinkUnderLoad": {"order": ["tokens", "samples"], "minSamples": 64,
                            "minTokens": 1_000_000},
    }, "router": {"admission": {"maxQueueLength": 0, "maxConcurrencyPerTenant": 100_000,
                                "requestTimeoutSeconds": 86_400}}})

    config = RouterConfig.model_validate(render_router_config(OWNER, spec))

    assert config.budgets.tier("b").max_samples == 64
    assert config.admission.max_queue_length == 0
    assert [s.resource for s in config.budgets.shrink_order] == ["tokens", "samples"]


def test_a_service_without_budgets_gets_the_routers_documented_default_policy(
    tmp_path: Path,
) -> None:
    spec = ReasoningServiceSpec.model_validate({"model": MODEL})
    path = tmp_path / "router.json"
    path.write_text(json.dumps(render_router_config(OWNER, spec)))

    config = load_config(path)

    assert config.budgets == default_policy()
    assert config.stopping == StopRule()
    assert config.admission == AdmissionConfig()


def test_a_regex_answers_section_reaches_the_router_config() -> None:
    answers = {"extractor": "regex", "pattern": r"A:\s*(\S+)", "equality": "text"}
    spec = ReasoningServiceSpec.model_validate({"model": MODEL, "answers": answers})
    config = RouterConfig.model_validate(render_router_config(OWNER, spec, replicas=1))
    assert config.answers == spec.answers
    assert config.answers.extractor_function()("A: 05/01/2021") == "05/01/2021"


def test_a_probes_section_reaches_the_router_config() -> None:
    probes = {"enabled": True, "intervalTokens": 128, "agreement": 2, "confidenceFloor": 0.6,
              "maxTokens": 8}
    spec = ReasoningServiceSpec.model_validate({"model": MODEL, "budgets": {"probes": probes}})
    config = RouterConfig.model_validate(render_router_config(OWNER, spec, replicas=1))
    assert config.probes == spec.budgets.probes == ProbeConfig.model_validate(probes)
    assert not ReasoningServiceSpec.model_validate({"model": MODEL}).budgets.probes.enabled


def test_a_router_affinity_section_reaches_the_router_config() -> None:
    affinity = {"enabled": False, "maxSamplesPerReplica": 8}
    spec = ReasoningServiceSpec.model_validate({"model": MODEL, "router": {"affinity": affinity}})
    config = RouterConfig.model_validate(render_router_config(OWNER, spec, replicas=1))
    assert RouterSpec.model_fields["affinity"].annotation is AffinityConfig
    assert RouterConfig.model_fields["affinity"].annotation is AffinityConfig
    assert config.affinity == AffinityConfig.model_validate(affinity)
