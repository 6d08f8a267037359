"""The prompt prior's knobs and its free label: what a finished request teaches.

Role: the light, pure half of the prompt prior learned online from the service's own
traffic (``prior_model.LearnedPrior`` is the model, ``prior_store`` its state file). Every
finished vote request labels itself (``free_label``: how contested its vote was, how many
samples past its first wave it needed, its confidence when known); ``observe_plan`` reads
that off a finished ``RequestPlan``. ``PriorConfig`` is also the CRD's
``spec.budgets.prior`` (the operator imports it; nothing here imports scikit-learn).
Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .plan import RequestPlan

CONTEST_WEIGHT = 0.5
SAMPLES_WEIGHT = 0.5
CONFIDENCE_WEIGHT = 0.5


class PriorConfig(BaseModel):
    """The learned prompt prior's knobs; also the CRD's ``spec.budgets.prior``."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=True)  # fmt: skip

    enabled: bool = Field(
        default=False,
        description="Learn a prompt prior from finished requests and, once warm, let it "
                    "pick the tier (first wave size, token cap) and the expected samples "
                    "in the demand the autoscaler reads. Off by default: measured at chance "
                    "on every real set, and it learns only from the requests it sends to "
                    "tiers that vote.",
    )  # fmt: skip
    n_features: int = Field(
        default=1 << 17, ge=1 << 10, le=1 << 22,
        description="Hashed n-gram features (the model's fixed size: 8 bytes each).",
    )  # fmt: skip
    warm_requests: int = Field(
        default=200, ge=1, le=1_000_000,
        description="Requests learned before the prior replaces the fixed estimator.",
    )  # fmt: skip
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0,
                                 description="Step size of each online update.")
    save_interval_seconds: float = Field(
        default=60.0, ge=1.0, le=86_400.0,
        description="How often the router saves the prior's state (and at shutdown).",
    )  # fmt: skip


class RouterPriorConfig(PriorConfig):
    """The router's view: the CRD's knobs and where the state file lives."""

    state_path: str | None = Field(
        default=None, description="the prior's state file (.npz); None: never saved"
    )


# -- the free label -------------------------------------------------------------------------


def free_label(*, leader_votes: int, samples: int, wave_size: int, max_samples: int,
               confidence: float | None = None) -> float:  # fmt: skip
    """A finished request's difficulty in [0, 1], from what its samples showed.

    The weighted mean of: how contested the vote was (1 - the leader's share of the
    finished samples, abstentions counting against it); how many samples it drew past its
    first wave, on a log scale relative to the envelope left after that wave (absent when
    the wave was the whole envelope; the first wave itself is the prior's choice, so it
    never counts); and, when given, 1 - its confidence (in [0, 1]).
    """
    if samples < 1 or not 0 <= leader_votes <= samples:
        raise ValueError("free_label needs samples >= 1 and 0 <= leader_votes <= samples")
    parts = [(CONTEST_WEIGHT, 1.0 - leader_votes / samples)]
    headroom = max_samples - wave_size
    if headroom > 0:
        extra = min(max(samples - wave_size, 0), headroom)
        parts.append((SAMPLES_WEIGHT, math.log1p(extra) / math.log1p(headroom)))
    if confidence is not None:
        parts.append((CONFIDENCE_WEIGHT, 1.0 - min(max(confidence, 0.0), 1.0)))
    return sum(w * v for w, v in parts) / sum(w for w, _ in parts)


@dataclass(frozen=True, slots=True)
class Observation:
    """What a finished request teaches: its label and its share of extra samples drawn."""

    label: float
    extra_ratio: float | None
    """Samples drawn past the first wave over the envelope left after it (None: no room)."""


def observe_plan(plan: RequestPlan, confidence: float | None = None) -> Observation | None:
    """The observation of a finished vote request; None when it teaches nothing (another
    strategy, a single sample, or nothing finished)."""
    budget, state = plan.budget, plan.state
    if budget.strategy.value != "vote" or budget.max_samples < 2 or state.samples < 1:
        return None
    label = free_label(leader_votes=state.leader_votes, samples=state.samples,
                       wave_size=budget.wave_size, max_samples=budget.max_samples,
                       confidence=confidence)  # fmt: skip
    headroom = budget.max_samples - budget.wave_size
    extra = max(plan.launched - budget.wave_size, 0) / headroom if headroom > 0 else None
    return Observation(label, extra)
