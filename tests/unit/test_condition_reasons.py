"""Every condition reason the reference documents is set by the operator, and only those.

The documented side is the reasons table of docs/reference/reasoningservice.md, parsed.
The emitted side comes from driving the code that sets conditions: the status policy over
every shape of children, the autoscaler's conditions over every case of the scaling policy's
own table, and the reconcile handler over a spec it refuses and a child the API refuses.
A reason added to ``Reason`` but not documented, or documented but set by nothing, fails.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from ponder_operator import handlers
from ponder_operator.api.conditions import CONDITION_REASONS, ConditionType, Reason
from ponder_operator.api.status import Condition, ReasoningServiceStatus
from ponder_operator.autoscale import scaling_conditions
from ponder_operator.context import OperatorContext
from ponder_operator.errors import ChildRejected
from ponder_operator.policy.status import Observed, compute_status
from ponder_operator.render import RenderOptions
from ponder_operator.settings import OperatorSettings
from test_scaling_policy import CASES, decide

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "reference" / "reasoningservice.md"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
Pair = tuple[str, str]


def documented() -> set[Pair]:
    """(condition type, reason) for each row of the reference's reasons table."""
    page = REFERENCE.read_text()
    table = page[page.index("| Condition | Reason |"):page.index("## kubectl get columns")]
    return set(re.findall(r"^\| (\w+) \| `(\w+)` \|", table, flags=re.MULTILINE))


def pairs(conditions: tuple[Condition, ...]) -> set[Pair]:
    return {(c.type, c.reason) for c in conditions}


def from_status_policy() -> set[Pair]:
    base = Observed(generation=1, triton_replicas=2, triton_ready=2, router_ready=1,
                    desired_replicas=2, unschedulable_pods=0, unschedulable_message="",
                    gpu_product_known=True)
    shapes: list[dict[str, Any]] = [
        {},
        {"triton_ready": 0},
        {"desired_replicas": 0},
        {"gpu_product_known": False},
        {"pod_error": "ImagePullBackOff: not found"},
        {"unschedulable_pods": 1, "unschedulable_message": "0/3 nodes are available"},
    ]
    found: set[Pair] = set()
    for shape in shapes:
        seen = Observed(**{**base.__dict__, **shape})
        found |= pairs(compute_status(ReasoningServiceStatus(), seen, "s", NOW).conditions)
    return found


def from_autoscaler() -> set[Pair]:
    found: set[Pair] = set()
    for case in CASES:
        decision = decide(case)
        current = case.state.get("current_replicas", 3)
        found |= pairs(scaling_conditions(ReasoningServiceStatus(), decision, current,
                                          decision.desired_replicas, 1, NOW))
    return found


class RefusingKube:
    """A Kube that refuses every child and records the status written."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []

    def apply(self, child: dict[str, Any]) -> dict[str, Any]:
        raise ChildRejected(child["kind"], child["metadata"]["name"], "refused")

    def patch_status(self, api_version: str, kind: str, name: str, namespace: str,
                     status: dict[str, Any]) -> None:
        self.statuses.append(status)


def from_reconcile(monkeypatch: pytest.MonkeyPatch) -> set[Pair]:
    monkeypatch.setattr(kopf, "warn", lambda *args, **kwargs: None)
    example = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    example["metadata"].update(namespace="team-a", uid="u1", generation=1)
    invalid = {**example, "spec": {**example["spec"], "model": {}}}
    context = OperatorContext(settings=OperatorSettings())
    kube = RefusingKube()
    context.kube, context.options = kube, RenderOptions()  # type: ignore[assignment]
    indexes: dict[str, Any] = {"deployments": {}, "triton_pods": {}, "gpu_products": {}}
    for body, error in ((invalid, kopf.PermanentError), (example, kopf.TemporaryError)):
        with pytest.raises(error):
            handlers.reconcile_body(kopf.Body(body), context, indexes)
    written = (ReasoningServiceStatus.model_validate(s) for s in kube.statuses)
    return {pair for status in written for pair in pairs(status.conditions)}


def test_the_reference_documents_each_reason_of_the_vocabulary_once() -> None:
    grouped = [reason for reasons in CONDITION_REASONS.values() for reason in reasons]
    assert sorted(grouped) == sorted(Reason), "each Reason belongs to exactly one condition"
    assert set(CONDITION_REASONS) == set(ConditionType)
    assert documented() == {(t.value, r.value) for t in ConditionType
                            for r in CONDITION_REASONS[t]}


def test_every_reason_is_a_valid_kubernetes_condition_reason() -> None:
    pattern = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    assert all(pattern.match(reason) for reason in Reason)


def test_the_operator_sets_exactly_the_documented_reasons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emitted = from_status_policy() | from_autoscaler() | from_reconcile(monkeypatch)
    assert emitted - documented() == set(), "set but not documented"
    assert documented() - emitted == set(), "documented but set by nothing"


def test_the_reconcile_handler_refuses_with_invalid_spec_and_child_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert from_reconcile(monkeypatch) == {("Ready", "InvalidSpec"), ("Ready", "ChildRejected")}


@pytest.mark.parametrize(("held", "degraded"), [
    (Reason.HELD_MISSING_METRICS, Reason.METRICS_UNAVAILABLE),
    (Reason.HELD_STALE_METRICS, Reason.METRICS_STALE),
    (Reason.HELD_CONTRADICTORY_METRICS, Reason.METRICS_CONTRADICTORY),
])
def test_a_held_scaling_reason_sets_the_matching_degraded_reason(
    held: Reason, degraded: Reason,
) -> None:
    for case in (c for c in CASES if c.reason == held):
        decision = decide(case)
        conditions = scaling_conditions(ReasoningServiceStatus(), decision, 3,
                                        decision.desired_replicas, 1, NOW)
        assert ("Scaling", held) in pairs(conditions)
        assert ("Degraded", degraded) in pairs(conditions)
        assert next(c for c in conditions if c.type == "Degraded").status == "True"


def test_a_service_in_a_terminating_namespace_is_left_alone_without_a_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(kopf, "warn", lambda *args, **kwargs: None)
    example = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    example["metadata"].update(namespace="team-a", uid="u1", generation=1)
    context = OperatorContext(settings=OperatorSettings())
    kube = RefusingKube()
    context.kube, context.options = kube, RenderOptions()  # type: ignore[assignment]
    indexes: dict[str, Any] = {"deployments": {}, "triton_pods": {}, "gpu_products": {}}

    def terminating(child: dict[str, Any]) -> dict[str, Any]:
        error = ApiException(status=403, reason="Forbidden")
        error.body = '{"details": {"causes": [{"reason": "NamespaceTerminating"}]}}'
        raise error

    kube.apply = terminating  # type: ignore[method-assign]
    handlers.reconcile_body(kopf.Body(example), context, indexes)  # no retry, no traceback
    assert "not reconciling team-a/" in caplog.text
    assert "u1" not in context.reconciled

    def forbidden(child: dict[str, Any]) -> dict[str, Any]:
        raise ApiException(status=403, reason="Forbidden")

    kube.apply = forbidden  # type: ignore[method-assign]
    with pytest.raises(ApiException):  # any other 403 is still an error kopf retries
        handlers.reconcile_body(kopf.Body(example), context, indexes)
