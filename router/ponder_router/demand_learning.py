"""The demand model learned online from the service's own finished requests.

Role: the state beside the pure ``budgets.DemandModel`` priors. The configured
``demand_model`` (``budgets``; ``ponder calibrate`` may fit it offline) is where learning
starts; every finished request then teaches, for its tier, the two numbers the model
holds:

- **token fill**: its finished samples' mean tokens over its first wave's token cap
  (``Budget.max_tokens_per_sample``, the cap the demand formulas multiply; a later
  sample may think longer, so the share is clamped at 1), as ``ponder calibrate``
  measures it offline;
- **extra samples**: for an adaptive request (vote, revise) whose envelope exceeds its
  first wave, the share of the samples left after that wave it launched. A budget the
  load shrink cut teaches no extra samples: its envelope is not the tier's, and counting
  it would inflate the share the next shrink divides.

Each number is a running mean that counts the prior as ``prior_requests`` requests and,
past ``window_requests`` requests, turns into an exponentially weighted mean over about
that many (bounded memory: two floats and a count per tier, never a prompt). The result is
clamped to the ``DemandModel``'s ranges. ``DemandLearner.models`` hands the learned model
of each tier to ``budgets.assign_budget`` (how hard the load shrink cuts) and the
executor's demand gauge (``demand.expected_remaining_tokens``, what the autoscaler
reads); the fleet simulator feeds one the same way. Pure: no I/O, no clock, no logging.

Why: the static priors (fill 0.6, extra 0.3) are far from what adaptive stopping draws
(the default policy on the stand-in expected 20.6 samples per request where requests
drew 4.6), so the published demand over-stated the work and, under a GPU quota, the load
shrink bit only at several times the pool's capacity.

On by default. Measured under a GPU quota at about twice its capacity over three seeds
(``bench/bench_demand_learning.py``): the static prior had stood in for a pressure signal
that reacted too late. With the honest demand alone, the load pressure (the open demand
over ``capacity.horizonSeconds`` of the ready replicas' throughput) passed 1 only once
queues were far past the SLO (SLO attainment 11-12 %). With the offered load beside it
(``offered``: arriving requests' unshrunk expected tokens over the pool's throughput,
which needs an honest demand model), the default policy kept 99.2-99.9 % SLO attainment
on the stand-in (54-65 % with the prior and the open demand alone) and 100 % on the
Llama-2 samples.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .budgets import DemandModel, Strategy
from .plan import RequestPlan

MIN_FILL_RATIO = 0.01
"""The least token fill the learner reports (the ``DemandModel`` needs more than 0)."""


class DemandLearningConfig(BaseModel):
    """Learn the demand model (token fill, extra samples) from finished requests."""

    # Also the ReasoningService CRD's spec.budgets.demandLearning (the operator's API
    # imports it), so the docstring and descriptions are what kubectl explain shows.

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    enabled: bool = Field(
        default=True,
        description="Learn each tier's token fill and extra-sample share from the "
                    "service's finished requests, starting from the configured demand "
                    "model; the published demand, the offered load and the load shrink "
                    "use what it learned.",
    )  # fmt: skip
    window_requests: int = Field(
        default=200, ge=1, le=1_000_000,
        description="Requests the learned means span once warm (an exponentially "
                    "weighted mean over about this many).",
    )  # fmt: skip
    prior_requests: int = Field(
        default=10, ge=0, le=1_000_000,
        description="Requests the configured demand model counts as before any is seen.",
    )  # fmt: skip


@dataclass
class _RunningMean:
    """A mean that counts ``prior`` as ``weight`` values, then forgets past ``window``."""

    value: float
    weight: float
    window: int

    def add(self, observed: float) -> None:
        self.weight = min(self.weight + 1.0, float(self.window))
        self.value += (observed - self.value) / self.weight


@dataclass
class _TierDemand:
    fill: _RunningMean
    extra: _RunningMean
    requests: int = 0


class DemandLearner:
    """The service's learned ``DemandModel`` per tier (see the module docstring)."""

    def __init__(self, prior: DemandModel, config: DemandLearningConfig) -> None:
        self.prior = prior
        self.config = config
        self._tiers: dict[str, _TierDemand] = {}
        self._models: dict[str, DemandModel] = {}  # built once per observation

    def _tier(self, name: str) -> _TierDemand:
        state = self._tiers.get(name)
        if state is None:
            weight, window = float(self.config.prior_requests), self.config.window_requests
            state = _TierDemand(_RunningMean(self.prior.token_fill_ratio, weight, window),
                                _RunningMean(self.prior.extra_sample_ratio, weight, window))
            self._tiers[name] = state
        return state

    def requests(self, tier: str) -> int:
        """Requests learned from for ``tier``."""
        state = self._tiers.get(tier)
        return 0 if state is None else state.requests

    def observe(self, plan: RequestPlan) -> None:
        """What a finished request's plan shows: its samples' fill, its extra samples
        (nothing from a request with no finished sample)."""
        budget = plan.budget
        if not plan.finished:
            return
        tokens = sum(sample.tokens for sample in plan.finished) / len(plan.finished)
        state = self._tier(budget.tier)
        state.requests += 1
        state.fill.add(min(tokens / budget.max_tokens_per_sample, 1.0))
        extra = budget.max_samples - budget.wave_size
        adaptive = budget.strategy in (Strategy.VOTE, Strategy.REVISE)
        if adaptive and extra > 0 and not budget.shrunk:
            drawn = min(max(plan.launched - budget.wave_size, 0), extra)
            state.extra.add(drawn / extra)
        fill = min(max(state.fill.value, MIN_FILL_RATIO), 1.0)
        share = min(max(state.extra.value, 0.0), 1.0)
        self._models[budget.tier] = DemandModel(token_fill_ratio=fill, extra_sample_ratio=share)

    def model(self, tier: str) -> DemandModel:
        """``tier``'s learned model (the prior until a request of it finished)."""
        return self._models.get(tier, self.prior)

    def models(self) -> dict[str, DemandModel]:
        """Every learned tier's model (``budgets.assign_budget``'s ``demand``)."""
        return dict(self._models)

    def tiers(self) -> set[str]:
        """The tiers learned from."""
        return set(self._models)
