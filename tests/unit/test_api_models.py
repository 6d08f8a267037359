"""The ReasoningService models accept what the CRD accepts and name the field they refuse."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from ponder_operator.api import (
    API_VERSION,
    KIND,
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    ReasoningServiceSpec,
    ReasoningServiceStatus,
    parse_spec,
    with_condition,
)
from ponder_operator.api.spec import DEFAULT_TRITON_IMAGE, EffortMapping
from ponder_operator.errors import PonderOperatorError, SpecError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))

Spec = dict[str, Any]


def base_spec() -> Spec:
    return {
        "model": {"name": "tiny", "repository": {"configMap": {"name": "tiny-model"}}},
        "resources": {"gpusPerReplica": 2},
        "scaling": {"minReplicas": 1, "maxReplicas": 3},
        "budgets": {
            "tiers": [
                {"name": "easy", "maxDifficulty": 0.4, "maxTokens": 1024},
                {"name": "medium", "maxDifficulty": 0.8, "maxTokens": 4096,
                 "maxSamples": 4, "initialSamples": 2, "strategy": "vote"},
                {"name": "hard", "maxDifficulty": 1, "maxTokens": 8192, "maxSamples": 8,
                 "strategy": "best-of-n", "verifierModel": "prm"},
            ],
            "effort": {"low": "easy", "high": "hard"},
        },
    }


def edit(path: str, value: Any) -> Callable[[Spec], None]:
    """Set ``<path>`` (dots and [i] indices) in a spec to ``value``."""
    def apply(spec: Spec) -> None:
        parts = path.replace("]", "").replace("[", ".").split(".")
        node: Any = spec
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return apply


def both(*changes: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        for change in changes:
            change(spec)
    return apply


def drop(path: str) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]
    return apply


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_reasoning_services(example: Path) -> None:
    manifest = yaml.safe_load(example.read_text())

    spec = parse_spec(manifest)

    assert manifest["apiVersion"] == API_VERSION
    assert manifest["kind"] == KIND
    assert spec.model.name


def test_there_are_minimal_and_multi_tier_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"minimal.yaml", "multi-tier.yaml"}


@pytest.mark.parametrize(("section", "field"), [
    ("cost", {"pricing": {"cloud": "aws", "gpuType": "H100", "region": "us-east-1"}}),
])
def test_fields_the_operator_would_ignore_are_refused(
    section: str, field: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"model": {"name": "m", "repository": {"pvc": {"claimName": "x"}}}}
    body[section] = {**body.get(section, {}), **field}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ReasoningServiceSpec.model_validate(body)


def test_shrinking_to_a_cheaper_tier_is_refused_since_the_router_cannot_do_it() -> None:
    body = {"model": {"name": "m", "repository": {"pvc": {"claimName": "x"}}},
            "budgets": {"shrinkUnderLoad": {"order": ["samples", "tier"]}}}
    with pytest.raises(ValidationError, match="samples' or 'tokens'"):
        ReasoningServiceSpec.model_validate(body)


def test_a_spec_with_only_a_model_gets_sensible_defaults() -> None:
    spec = ReasoningServiceSpec.model_validate(
        {"model": {"name": "m", "repository": {"pvc": {"claimName": "models"}}}})

    assert spec.model.image == DEFAULT_TRITON_IMAGE
    assert spec.model.served_triton_model_name == "m"
    assert spec.model.startup_timeout_seconds == 1800
    assert spec.resources.gpus_per_replica == 1
    assert spec.resources.memory_per_replica == "16Gi"
    assert spec.resources.shared_memory_per_replica == "2Gi"
    assert spec.scaling.min_replicas <= spec.scaling.max_replicas
    assert spec.scaling.interval_seconds == 5
    assert spec.scaling.paused is False
    assert spec.scaling.replicas is None
    assert spec.scaling.scale_to_zero.enabled is False
    assert [t.name for t in spec.budgets.tiers] == ["easy", "medium", "hard"]
    assert spec.budgets.tiers[-1].max_difficulty == 1.0
    assert spec.budgets.tiers[0].strategy == "vote"
    assert spec.budgets.tiers[0].stop_on_first_wave_agreement
    assert spec.budgets.effective_effort().high == "hard"
    assert spec.budgets.stopping.kind == "settled"
    assert spec.budgets.stopping.threshold is None
    assert spec.budgets.stopping.rule_threshold == 0.97
    assert spec.router.replicas == 2
    assert spec.cost.gpu_hourly_price is None
    assert spec.cost.pricing is None


def test_the_spec_round_trips_through_its_camel_case_form() -> None:
    spec = parse_spec(yaml.safe_load((EXAMPLES[0].parent / "multi-tier.yaml").read_text()))

    wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)

    assert ReasoningServiceSpec.model_validate(wire) == spec
    assert wire["scaling"]["maxGpus"] == 8
    assert wire["budgets"]["tiers"][2]["escalateTo"] == "r1-distill-32b"
    assert "max_gpus" not in wire["scaling"]


def test_fields_also_validate_by_their_python_names() -> None:
    spec = ReasoningServiceSpec.model_validate(
        {"model": {"name": "m", "repository": {"config_map": {"name": "c"}}},
         "scaling": {"max_replicas": 9}})

    assert spec.scaling.max_replicas == 9


def test_specs_are_immutable() -> None:
    spec = parse_spec(base_spec())

    with pytest.raises(ValidationError, match="frozen"):
        spec.scaling.max_replicas = 10  # type: ignore[misc, unused-ignore]


INVALID = [
    pytest.param(edit("scaling.minReplicas", 5), "spec.scaling.minReplicas",
                 "must not exceed maxReplicas", id="min-replicas-above-max"),
    pytest.param(edit("scaling.maxReplicas", 0), "spec.scaling.maxReplicas",
                 "greater than or equal to 1", id="zero-max-replicas"),
    pytest.param(edit("scaling.maxReplicas", "3"), "spec.scaling.maxReplicas",
                 "valid integer", id="integer-given-as-a-string"),
    pytest.param(edit("budgets.tiers[0].maxDifficulty", 0.9), "spec.budgets.tiers",
                 "strictly increasing", id="tiers-out-of-order"),
    pytest.param(edit("budgets.tiers[1].maxDifficulty", 0.4), "spec.budgets.tiers",
                 "strictly increasing", id="tiers-overlapping"),
    pytest.param(edit("budgets.tiers[2].maxDifficulty", 0.9), "spec.budgets.tiers",
                 "must be 1", id="last-tier-below-one"),
    pytest.param(edit("budgets.tiers[0].maxDifficulty", 1.5),
                 "spec.budgets.tiers[0].maxDifficulty", "less than or equal to 1",
                 id="difficulty-above-one"),
    pytest.param(edit("budgets.tiers[1].initialSamples", 5),
                 "spec.budgets.tiers[1].initialSamples", "must not exceed maxSamples",
                 id="initial-samples-above-max"),
    pytest.param(edit("budgets.tiers[0].maxTokens", -1), "spec.budgets.tiers[0].maxTokens",
                 "greater than or equal to 1", id="negative-max-tokens"),
    pytest.param(edit("budgets.tiers[1].maxSamples", 0), "spec.budgets.tiers[1].maxSamples",
                 "greater than or equal to 1", id="zero-max-samples"),
    pytest.param(edit("budgets.tiers[0].maxSamples", 4), "spec.budgets.tiers[0].maxSamples",
                 "maxSamples must be 1", id="single-strategy-with-many-samples"),
    pytest.param(drop("budgets.tiers.2.verifierModel"),
                 "spec.budgets.tiers[2].verifierModel", "needs verifierModel",
                 id="best-of-n-without-verifier"),
    pytest.param(edit("budgets.tiers[2].verifierModel", "my verifier"),
                 "spec.budgets.tiers[2].verifierModel", "should match pattern",
                 id="verifier-model-not-a-triton-model-name"),
    pytest.param(edit("budgets.estimator", {"bias": 0.0, "coefficients": {"sentiment": 1.0}}),
                 "spec.budgets.estimator.coefficients",
                 "coefficients must name features the router extracts: log_chars, ",
                 id="estimator-weighs-an-unknown-feature"),
    pytest.param(edit("budgets.estimator", {"bias": 1e5, "coefficients": {}}),
                 "spec.budgets.estimator.bias", "less than or equal to 10000",
                 id="estimator-bias-out-of-range"),
    pytest.param(edit("budgets.estimator", {"coefficients": {"diagram": 1.0}}),
                 "spec.budgets.estimator.bias", "Field required",
                 id="estimator-without-bias"),
    pytest.param(edit("budgets.tiers[1].strategy", "majority"),
                 "spec.budgets.tiers[1].strategy", "'single', 'vote', 'best-of-n' or 'revise'",
                 id="unknown-strategy"),
    pytest.param(edit("budgets.tiers[1].name", "easy"), "spec.budgets.tiers",
                 "tier names must be unique", id="duplicate-tier-names"),
    pytest.param(edit("budgets.tiers", []), "spec.budgets.tiers", "at least 1 item",
                 id="no-tiers"),
    pytest.param(edit("budgets.effort.medium", "extreme"), "spec.budgets.effort.medium",
                 "effort.medium must name a tier", id="effort-names-missing-tier"),
    pytest.param(edit("budgets.stopping.threshold", 0.4), "spec.budgets.stopping.threshold",
                 "greater than 0.5", id="stopping-threshold-below-half"),
    pytest.param(edit("budgets.stopping.threshold", 1.0), "spec.budgets.stopping.threshold",
                 "less than 1", id="stopping-threshold-of-one-never-stops"),
    pytest.param(edit("budgets.shrinkUnderLoad.order", ["tokens", "tokens"]),
                 "spec.budgets.shrinkUnderLoad.order", "must not repeat",
                 id="shrink-order-repeats"),
    pytest.param(edit("scaling.maxReplica", 3), "spec.scaling.maxReplica",
                 "Extra inputs are not permitted", id="unknown-field"),
    pytest.param(edit("model.repository.pvc", {"claimName": "models"}),
                 "spec.model.repository", "exactly one of pvc, uri and configMap",
                 id="two-repository-sources"),
    pytest.param(edit("model.repository", {}), "spec.model.repository",
                 "exactly one of pvc, uri and configMap", id="no-repository-source"),
    pytest.param(edit("model.repository", {"uri": {"uri": "http://example/models"}}),
                 "spec.model.repository.uri.uri", "should match pattern",
                 id="repository-uri-without-storage-scheme"),
    pytest.param(drop("model"), "spec.model", "Field required", id="no-model"),
    pytest.param(edit("model.backend", "tensorrtllm"), "spec.model.backend",
                 "backend tensorrtllm is not supported yet", id="tensorrtllm-backend"),
    pytest.param(edit("model.startupTimeoutSeconds", 30), "spec.model.startupTimeoutSeconds",
                 "greater than or equal to 60", id="startup-timeout-too-short"),
    pytest.param(edit("model.serviceAccountName", "Model Reader"),
                 "spec.model.serviceAccountName", "should match pattern",
                 id="service-account-not-a-name"),
    pytest.param(edit("resources.sharedMemory", "2 GB"), "spec.resources.sharedMemory",
                 "should match pattern", id="shared-memory-not-a-quantity"),
    pytest.param(edit("model.repository", {"uri": {"uri": "s3://b/m", "storageSize": "lots"}}),
                 "spec.model.repository.uri.storageSize", "should match pattern",
                 id="uri-storage-size-not-a-quantity"),
    pytest.param(edit("resources.gpusPerReplica", 9), "spec.resources.gpusPerReplica",
                 "less than or equal to 8", id="too-many-gpus-per-replica"),
    pytest.param(edit("resources.memory", "16 GB"), "spec.resources.memory",
                 "should match pattern", id="memory-not-a-quantity"),
    pytest.param(edit("resources.tolerations", [{"key": "k", "operator": "Exists",
                                                  "value": "v"}]),
                 "spec.resources.tolerations[0].value", "must be empty when operator is Exists",
                 id="exists-toleration-with-value"),
    pytest.param(edit("scaling.maxGpus", 1), "spec.scaling.maxGpus",
                 "at least resources.gpusPerReplica", id="max-gpus-below-one-replica"),
    pytest.param(both(edit("scaling.minReplicas", 3), edit("scaling.maxGpus", 4)),
                 "spec.scaling.maxGpus", "minReplicas * resources.gpusPerReplica",
                 id="max-gpus-below-min-replicas"),
    pytest.param(edit("cost", {"gpuHourlyPrice": 2.5, "pricing": {"cloud": "aws",
                                                                   "gpuType": "H100"}}),
                 "spec.cost.pricing", "at most one of gpuHourlyPrice and pricing",
                 id="price-and-pricing"),
    pytest.param(edit("cost.pricing", {"cloud": "oracle", "gpuType": "H100"}),
                 "spec.cost.pricing.cloud", "'aws', 'gcp', 'azure' or 'lambda'",
                 id="unknown-cloud"),
    pytest.param(edit("cost.labels", {"team": "a team"}), "spec.cost.labels.team",
                 "should match pattern", id="label-value-with-a-space"),
    pytest.param(edit("budgets.forcing", {"cue": ""}), "spec.budgets.forcing.cue",
                 "at least 1 character", id="forcing-cue-empty"),
    pytest.param(edit("budgets.forcing", {"answerTokens": 0}),
                 "spec.budgets.forcing.answerTokens", "greater than or equal to 1",
                 id="forcing-answer-tokens-below-one"),
]


@pytest.mark.parametrize(("change", "field_path", "message"), INVALID)
def test_invalid_specs_are_refused_naming_the_field(
    change: Callable[[Spec], None], field_path: str, message: str
) -> None:
    spec = copy.deepcopy(base_spec())
    change(spec)

    with pytest.raises(SpecError) as caught:
        parse_spec(spec)

    assert caught.value.field_path == field_path
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{field_path}: ")


def test_pydantic_errors_name_the_field_by_its_wire_name() -> None:
    spec = base_spec()
    spec["scaling"]["targetDrainSeconds"] = 0

    with pytest.raises(ValidationError) as caught:
        ReasoningServiceSpec.model_validate(spec)

    assert caught.value.errors()[0]["loc"] == ("scaling", "targetDrainSeconds")


def test_spec_error_lists_every_problem_and_is_an_operator_error() -> None:
    spec = base_spec()
    spec["scaling"]["intervalSeconds"] = 0
    spec["router"] = {"replicas": 0}

    with pytest.raises(SpecError) as caught:
        parse_spec(spec)

    assert isinstance(caught.value, PonderOperatorError)
    assert [path for path, _ in caught.value.problems] == [
        "spec.scaling.intervalSeconds", "spec.router.replicas"]


def test_parse_spec_takes_the_whole_object_or_its_spec() -> None:
    whole = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x"},
             "spec": base_spec()}

    assert parse_spec(whole) == parse_spec(base_spec())


def test_parse_spec_refuses_an_object_without_a_spec() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x"}})

    assert caught.value.field_path == "spec"


@pytest.mark.parametrize(("difficulty", "tier"), [
    (0.0, "easy"), (0.4, "easy"), (0.41, "medium"), (0.8, "medium"), (0.95, "hard"),
    (1.0, "hard"), (-0.2, "easy"), (1.7, "hard"),
])
def test_each_difficulty_falls_in_exactly_one_tier(difficulty: float, tier: str) -> None:
    budgets = parse_spec(base_spec()).budgets

    assert budgets.tier_for_difficulty(difficulty).name == tier


def test_tiers_are_found_by_name() -> None:
    budgets = parse_spec(base_spec()).budgets

    assert budgets.tier_named("medium").max_samples == 4
    with pytest.raises(KeyError):
        budgets.tier_named("extreme")


# -- status -------------------------------------------------------------------------------


T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ready(status: ConditionStatus, at: datetime,
          reason: Reason = Reason.REPLICAS_READY) -> Condition:
    return Condition(type=ConditionType.READY, status=status, reason=reason, message="",
                     last_transition_time=at)


def test_condition_types_are_the_documented_ones() -> None:
    assert {t.value for t in ConditionType} == {"Ready", "Scaling", "Degraded",
                                                "Unschedulable"}


def test_setting_a_condition_with_the_same_status_keeps_its_transition_time() -> None:
    first = with_condition((), ready("True", T0))

    again = with_condition(first, ready("True", T0 + timedelta(minutes=5)))

    assert again[0].last_transition_time == T0


def test_setting_a_condition_with_a_new_status_moves_its_transition_time() -> None:
    later = T0 + timedelta(minutes=5)
    first = with_condition((), ready("True", T0))

    changed = with_condition(first, ready("False", later, Reason.REPLICAS_NOT_READY))

    assert len(changed) == 1
    assert changed[0].last_transition_time == later
    assert changed[0].reason == "ReplicasNotReady"


def test_status_serializes_to_camel_case_json_and_back() -> None:
    status = ReasoningServiceStatus(
        observed_generation=2, replicas=3, ready_replicas=2, desired_replicas=4,
        selector="app=x", hourly_cost=12.5, gpu_seconds_total=7200.0, at_ceiling=True,
        last_scale_time=T0, conditions=(ready("True", T0),),
    )

    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)

    assert wire["readyReplicas"] == 2
    assert wire["gpuSecondsTotal"] == 7200.0
    assert wire["conditions"][0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert "cost" not in wire
    assert ReasoningServiceStatus.model_validate(wire) == status
    assert ReasoningServiceStatus.model_validate(wire).condition("Ready") == ready("True", T0)


def test_status_ignores_keys_it_does_not_know() -> None:
    status = ReasoningServiceStatus.model_validate({"replicas": 1, "kopf": {"progress": {}}})

    assert status.replicas == 1


def test_a_service_that_lists_its_own_tiers_later_keeps_no_default_effort_mapping() -> None:
    # kubectl apply keeps a field the API server defaulted; the effort mapping must not be
    # such a field, or a service could never move from the default tiers to its own.
    live = ReasoningServiceSpec.model_validate(
        {"model": {"name": "m", "repository": {"pvc": {"claimName": "x"}}}})
    dumped = live.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["budgets"]["effort"] == {}
    dumped["budgets"]["tiers"] = [{"name": "only", "maxDifficulty": 1.0, "maxTokens": 512,
                                   "strategy": "single"}]
    edited = ReasoningServiceSpec.model_validate(dumped)
    assert edited.budgets.effective_effort() == EffortMapping()


@pytest.mark.parametrize(
    ("answers", "field", "fragment"),
    [
        ({"extractor": "magic"}, "spec.answers.extractor", "'chain'"),
        ({"extractor": "regex"}, "spec.answers.pattern", "pattern is required with extractor"),
        ({"extractor": "regex", "pattern": "A: ("}, "spec.answers.pattern",
         "not a regular expression"),
        ({"extractor": "regex", "pattern": r"A:\s*\S+"}, "spec.answers.pattern",
         "exactly one capture group"),
        ({"extractor": "regex", "pattern": r"(\d+)+x"}, "spec.answers.pattern", "exponential"),
        ({"equality": "fuzzy"}, "spec.answers.equality", "'text'"),
    ],
)  # fmt: skip
def test_an_unusable_answers_section_is_refused_naming_the_field(
    answers: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**base_spec(), "answers": answers})
    assert caught.value.field_path == field
    assert fragment in str(caught.value)

