"""The ReasoningService status: what the operator reports, conditions included.

The operator builds a ``ReasoningServiceStatus`` and writes
``status.model_dump(mode="json", by_alias=True, exclude_none=True)`` to the status
subresource. Conditions follow ``metav1.Condition``; their types and reasons are the named
constants of ``conditions`` (re-exported here), so the handlers, the tests and
``kubectl wait --for=condition=Ready`` agree.

Neighbours: ``spec`` (what the user asks for), ``conditions`` (the vocabulary) and ``crd``
(which generates the CRD's status schema from these models, without defaults).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ponder_operator.api.conditions import ConditionType, Reason

__all__ = [
    "Condition", "ConditionStatus", "ConditionType", "Reason", "ReasoningServiceStatus",
    "find_condition", "with_condition",
]


ConditionStatus = Literal["True", "False", "Unknown"]


class StatusModel(BaseModel):
    """Base of the status models: camelCase on the wire, immutable.

    Unknown keys are ignored rather than refused: kopf hands over the status as stored,
    and the API server has already pruned it to this schema.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Condition(StatusModel):
    """One observation of the service's state, shaped like ``metav1.Condition``."""

    type: str = Field(
        min_length=1, max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Condition type: Ready, Scaling, Degraded or Unschedulable.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0,
        description="metadata.generation the condition was computed from.")


class ReasoningServiceStatus(StatusModel):
    """What the operator last observed and decided for the service."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the operator last reconciled.")
    replicas: int | None = Field(default=None, ge=0,
                                 description="Triton replicas that exist.")
    ready_replicas: int | None = Field(default=None, ge=0,
                                       description="Triton replicas ready.")
    desired_replicas: int | None = Field(
        default=None, ge=0, description="Replicas the autoscaler last asked for.")
    selector: str | None = Field(
        default=None, max_length=1024,
        description="Label selector of the Triton pods, for the scale subresource.")
    at_ceiling: bool | None = Field(
        default=None,
        description="Demand wants more replicas than maxReplicas or maxGpus allow.")
    last_scale_time: datetime | None = Field(default=None,
                                             description="When the pool last changed size.")
    last_scale_reason: str | None = Field(default=None, max_length=1024,
                                          description="Why the pool last changed size.")
    conditions: tuple[Condition, ...] = Field(
        default=(), max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Scaling, Degraded and Unschedulable.")
    gpu_seconds_total: float | None = Field(
        default=None, ge=0,
        description="GPU-seconds accounted since creation; the counter resumes from here "
                    "after a restart.")
    gpu_hours: float | None = Field(default=None, ge=0,
                                    description="GPU-hours since creation.")
    cost: float | None = Field(default=None, ge=0,
                               description="USD spent on GPUs since creation.")
    hourly_cost: float | None = Field(default=None, ge=0,
                                      description="USD per hour at the current replica count.")

    def condition(self, type_: str) -> Condition | None:
        """The condition of type ``type_``, if present."""
        return find_condition(self.conditions, type_)


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of type ``type_`` in ``conditions``, if present."""
    return next((c for c in conditions if c.type == type_), None)


def with_condition(
    conditions: Sequence[Condition], condition: Condition
) -> tuple[Condition, ...]:
    """``conditions`` with ``condition`` set, replacing one of the same type.

    The previous ``lastTransitionTime`` is kept when the status did not change, as
    ``meta.SetStatusCondition`` does, so the time says when the state began.
    """
    previous = find_condition(conditions, condition.type)
    if previous is not None and previous.status == condition.status:
        condition = condition.model_copy(
            update={"last_transition_time": previous.last_transition_time})
    if previous is None:
        return (*conditions, condition)
    return tuple(condition if c.type == condition.type else c for c in conditions)
