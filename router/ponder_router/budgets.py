"""The budget policy: difficulty, effort and load in, a per-request compute budget out.

Role: between ``difficulty`` (which scores the prompt) and the fan-out (which launches
samples and stops them through ``aggregate``). ``BudgetPolicy`` is the router's view of
the ReasoningService's budget section, validated with the same rules as the CRD's CEL
rules (camelCase aliases, so the operator's ConfigMap loads as is). Pure: the live router,
the offline evaluator and the autoscaler simulator all call ``assign_budget`` and
``expected_request_tokens``.

Rules, in the order ``assign_budget`` applies them:

1. **Tier.** ``reasoning_effort`` ``auto`` picks the first tier whose ``max_difficulty``
   is at least the estimate's score. ``low`` caps at its mapped tier (at most that tier),
   ``high`` floors at its mapped tier (at least that tier), ``medium`` pins its mapped tier.
   An effort the policy does not map behaves as ``auto``.
2. **Client caps** (``max_tokens``, a sample limit) only ever lower the tier's budgets,
   both token caps included (the first wave's, ``max_tokens``, and the one of samples
   after it, ``max_tokens_after_first_wave``: the tier's token envelope).
3. **Load shrink**: only when pressure > 1 *and* the pool cannot add capacity in time
   (``LoadState.shrinks``: at its replica ceiling, or, where the caller reports it,
   while scale-up is in flight), the budget is divided by the pressure, resource by
   resource in ``shrink_order``, never below each step's floor (nor raised to it). What
   is divided is the samples a request is *expected* to draw (``DemandModel``: its first
   wave plus ``extra_sample_ratio`` of the rest), not the envelope ``max_samples``: an
   envelope of 64 halved is still 32, which caps no request that stops early and barely
   any that is contested, so shrinking would relieve nothing. The steps:

   - ``agreement`` (not in the default order): the stopping rule needs a smaller lead
     (``Budget.stop_scale`` divides the lead, the threshold's log-odds, the margin or the
     window; ``aggregate.StopRule`` applies it), which shortens the extra samples, since
     a sequential test's expected length grows with its bar (counted as the divisor to
     the power ``AGREEMENT_RELIEF_EXPONENT``). Requests
     that agree stop sooner; contested ones still draw until their leader leads. It
     cannot touch the first wave, and stops at its floor (least lead, default 2 votes).
   - ``samples``: caps ``max_samples`` at what is still expected, divided by what is
     left of the pressure (a contested request is truncated: a vote of fewer).
   - ``tokens``: caps each sample's tokens. A budget whose tokens shrank does not grow
     after its first wave.

   Measured under a GPU quota at about twice its capacity (``bench/bench_demand_learning.py``,
   three seeds, and ``bench/bench_fleet.py``): with the pressure of the open demand alone,
   agreement first lost less accuracy than samples first on the Llama-2 samples; with
   the offered load beside it (the default) the two orders are within noise of each other
   over seeds, and on the fleet benchmark's draw agreement first lost more. So the
   default order stays samples, then tokens; ``agreement`` is the service's to add.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .difficulty import DEFAULT_WEIGHTS, DifficultyEstimate, EstimatorWeights, FeatureEstimator
from .errors import PolicyError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$"
"""A model name, in the OpenAI API or inside Triton."""
_MODEL_CONFIG = ConfigDict(
    frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
)


class Strategy(StrEnum):
    """How a tier spends its samples."""

    SINGLE = "single"  # one sample, its answer is the answer
    VOTE = "vote"  # parallel samples, majority vote with adaptive stopping
    BEST_OF_N = "best-of-n"  # parallel samples, the verifier's best one wins
    REVISE = "revise"  # sequential samples, each revising the previous one


class Effort(StrEnum):
    """The OpenAI ``reasoning_effort`` values, plus ``auto`` (use the estimate)."""

    AUTO = "auto"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ShrinkResource(StrEnum):
    """What a load shrink step reduces."""

    AGREEMENT = "agreement"  # the lead the stopping rule needs: stop sooner
    SAMPLES = "samples"
    TOKENS = "tokens"


class Tier(BaseModel):
    """One budget tier: the difficulty band up to ``max_difficulty`` and what it may spend."""

    model_config = _MODEL_CONFIG

    name: str = Field(pattern=_DNS_LABEL.pattern)
    max_difficulty: float = Field(gt=0.0, le=1.0)
    max_tokens: int = Field(ge=1, description="generated tokens per sample of the first wave")
    max_tokens_after_first_wave: int | None = Field(
        default=None, ge=1,
        description="generated tokens per sample launched after the first wave (the "
                    "envelope's ceiling: a request the first wave did not settle may think "
                    "longer); unset: maxTokens",
    )  # fmt: skip
    max_samples: int = Field(ge=1, le=256)
    initial_samples: int = Field(ge=1, le=256, description="size of the first wave")
    strategy: Strategy
    escalate_to: str | None = Field(
        default=None, pattern=_DNS_LABEL.pattern, description="ReasoningService of a larger model"
    )
    verifier_model: str | None = Field(
        default=None, pattern=MODEL_NAME_PATTERN,
        description="Triton model that scores this tier's best-of-n samples; "
                    "the service-wide verifier's model if unset",
    )  # fmt: skip
    stop_threshold: float | None = Field(
        default=None, gt=0.5, lt=1.0,
        description="probability this tier's beta or settled stopping rule needs; "
                    "the service's stopping threshold if unset",
    )  # fmt: skip
    stop_margin: int | None = Field(
        default=None, ge=1, le=64,
        description="votes the leader must be ahead by under the margin stopping rule; "
                    "the service's margin if unset",
    )  # fmt: skip
    stop_on_first_wave_agreement: bool = Field(
        default=False,
        description="a vote tier stops as soon as its whole first wave (initialSamples, "
                    "at least 2) agrees; any disagreement or abstention in it leaves the "
                    "request to the stopping rule, up to maxSamples",
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self) -> Tier:
        if self.initial_samples > self.max_samples:
            raise ValueError(f"tier {self.name}: initialSamples must be <= maxSamples")
        if (self.max_tokens_after_first_wave is not None
                and self.max_tokens_after_first_wave < self.max_tokens):  # fmt: skip
            raise ValueError(f"tier {self.name}: maxTokensAfterFirstWave must be >= maxTokens")
        if self.strategy is Strategy.SINGLE and self.max_samples != 1:
            raise ValueError(f"tier {self.name}: strategy single needs maxSamples == 1")
        if self.stop_on_first_wave_agreement and (
            self.strategy is not Strategy.VOTE or self.initial_samples < 2
        ):
            raise ValueError(f"tier {self.name}: stopOnFirstWaveAgreement needs strategy "
                             "vote and initialSamples >= 2")  # fmt: skip
        return self


class ShrinkStep(BaseModel):
    """One step of the load shrink: reduce ``resource`` but never below ``floor``."""

    model_config = _MODEL_CONFIG

    resource: ShrinkResource
    floor: int = Field(ge=1, description="least lead in votes the stopping rule needs "
                                         "(agreement), least samples, or least tokens per "
                                         "sample")


class DemandModel(BaseModel):
    """How much of a budget a request is expected to use (priors for the calibration tool).

    A sample is expected to generate ``token_fill_ratio`` of its token cap; an adaptive
    request (vote, revise) is expected to run its first wave plus ``extra_sample_ratio``
    of the samples left after it, since adaptive stopping ends most requests early.
    """

    model_config = _MODEL_CONFIG

    token_fill_ratio: float = Field(default=0.6, gt=0.0, le=1.0)
    extra_sample_ratio: float = Field(default=0.3, ge=0.0, le=1.0)


class BudgetPolicy(BaseModel):
    """The whole policy: tiers by difficulty, effort overrides, and how to shrink under load.

    ``estimator`` holds the weights of the difficulty score the tiers' ``maxDifficulty``
    bounds cut (``ponder calibrate`` fits both together); unset, the router's defaults.
    """

    model_config = _MODEL_CONFIG

    tiers: tuple[Tier, ...] = Field(min_length=1, max_length=16)
    effort_tiers: dict[Effort, str] = Field(default_factory=dict)
    shrink_order: tuple[ShrinkStep, ...] = (
        ShrinkStep(resource=ShrinkResource.SAMPLES, floor=1),
        ShrinkStep(resource=ShrinkResource.TOKENS, floor=512),
    )
    demand_model: DemandModel = DemandModel()
    estimator: EstimatorWeights | None = Field(
        default=None, description="difficulty estimator weights; None: DEFAULT_WEIGHTS"
    )

    @model_validator(mode="after")
    def _consistent(self) -> BudgetPolicy:
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        bounds = [tier.max_difficulty for tier in self.tiers]
        if any(lower >= upper for lower, upper in itertools.pairwise(bounds)):
            raise ValueError("tiers must be ordered by strictly increasing maxDifficulty")
        if bounds[-1] != 1.0:
            raise ValueError("the last tier must have maxDifficulty 1.0")
        if Effort.AUTO in self.effort_tiers:
            raise ValueError("effortTiers maps low, medium and high; auto uses the estimate")
        unknown = sorted(set(self.effort_tiers.values()) - set(names))
        if unknown:
            raise ValueError(f"effortTiers names unknown tiers {unknown}")
        resources = [step.resource for step in self.shrink_order]
        if len(set(resources)) != len(resources):
            raise ValueError("shrinkOrder lists each resource at most once")
        return self

    def feature_estimator(self) -> FeatureEstimator:
        """The difficulty estimator whose scores this policy's tiers are cut on."""
        return FeatureEstimator(self.estimator or DEFAULT_WEIGHTS)

    def tier(self, name: str) -> Tier:
        """The tier called ``name``."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise PolicyError(f"no tier named {name!r}")


class LoadState(BaseModel):
    """The pool's load as the budget policy sees it.

    ``pressure`` is expected demand over what the pool can serve (dimensionless; 1.0 = the
    pool is exactly busy). It only shrinks budgets when ``at_ceiling`` says the autoscaler
    cannot add replicas, or ``scaling_up`` says replicas it added are still starting (a
    burst shorter than a model load); otherwise more demand means more GPUs, not less
    thinking. Whether to report ``scaling_up`` at all is the caller's knob.
    """

    model_config = _MODEL_CONFIG

    pressure: float = Field(default=0.0, ge=0.0)
    at_ceiling: bool = False
    scaling_up: bool = False

    @property
    def shrinks(self) -> bool:
        """Whether this load shrinks budgets (module rule 3)."""
        return (self.at_ceiling or self.scaling_up) and self.pressure > 1.0

    @classmethod
    def idle(cls) -> LoadState:
        """No load: budgets are never shrunk."""
        return cls()

    @classmethod
    def from_demand(
        cls,
        *,
        demand_tokens: float,
        capacity_tokens_per_second: float,
        horizon_seconds: float,
        at_ceiling: bool,
        scaling_up: bool = False,
        offered_tokens_per_second: float = 0.0,
    ) -> LoadState:
        """Pressure = the larger of the open demand over ``horizon_seconds`` of capacity
        (the stock: how far behind the pool is) and the offered load over capacity (the
        flow: the utilisation arriving requests ask for, unshrunk; ``offered``); unknown
        (zero) capacity never shrinks."""
        if capacity_tokens_per_second <= 0:
            return cls(pressure=0.0, at_ceiling=at_ceiling, scaling_up=scaling_up)
        stock = demand_tokens / (capacity_tokens_per_second * horizon_seconds)
        flow = offered_tokens_per_second / capacity_tokens_per_second
        return cls(pressure=max(stock, flow, 0.0), at_ceiling=at_ceiling,
                   scaling_up=scaling_up)  # fmt: skip


class Budget(BaseModel):
    """What one request may spend, and what it is expected to spend."""

    model_config = _MODEL_CONFIG

    tier: str
    strategy: Strategy
    max_tokens_per_sample: int = Field(ge=1, description="token cap of a first-wave sample")
    max_samples: int = Field(ge=1)
    wave_size: int = Field(ge=1, description="samples in the first wave")
    max_tokens_after_first_wave: int | None = Field(
        default=None, ge=1, description="token cap of a later sample; None: the first's"
    )
    expected_tokens: float = Field(ge=0.0, description="expected generated tokens, all samples")
    shrunk: bool = False
    shrink_reason: str | None = None
    escalate_to: str | None = None
    stop_threshold: float | None = Field(
        default=None, gt=0.5, lt=1.0,
        description="the tier's beta or settled threshold, if it has one")
    stop_margin: int | None = Field(
        default=None, ge=1, le=64, description="the tier's margin-rule lead, if it has one"
    )
    stop_on_first_wave_agreement: bool = Field(
        default=False, description="stop once the whole first wave agrees (the tier's)"
    )
    stop_scale: float = Field(
        default=1.0, ge=1.0, description="the load shrink's divisor of the lead the "
        "stopping rule needs (1: unshrunk; ``aggregate.StopRule`` applies it)")
    stop_min_lead: int = Field(
        default=1, ge=1, description="least lead in votes a shrunk stopping rule needs")

    def sample_max_tokens(self, index: int) -> int:
        """The token cap of the request's sample ``index`` (launch order, from 0): the
        first wave's ``max_tokens_per_sample``, then ``max_tokens_after_first_wave``."""
        if index < self.wave_size or self.max_tokens_after_first_wave is None:
            return self.max_tokens_per_sample
        return self.max_tokens_after_first_wave

    def forces(self, index: int) -> bool:
        """Whether sample ``index``, cut off at its cap, is made to answer there (budget
        forcing, where the service enables it). Not in a first wave whose envelope grows
        after it (and more samples may follow): such a sample had not finished thinking,
        so it abstains (doubt: the first wave does not agree) and the request goes on to
        the longer samples."""
        return (index >= self.wave_size or self.max_tokens_after_first_wave is None
                or self.max_samples <= self.wave_size)  # fmt: skip


AGREEMENT_FLOOR = 2
"""The agreement step's default floor: a lead of two votes (one vote is maj@1)."""
SETTLED_THRESHOLD = 0.97
"""The default stopping rule's (``aggregate``'s settled rule) default threshold; kept here,
beneath ``aggregate``, so the load shrink's default bar reads the same number. Replayed on
every recorded set (``bench/bench_evaluate.py``), 0.95 let the Llama-2 GSM8K default fall
0.51 points below maj@48 (the target allows 0.5)."""
DEFAULT_RULE_BAR = math.log(SETTLED_THRESHOLD / (1.0 - SETTLED_THRESHOLD))
"""The agreement the default stopping rule needs, in log-odds
(``aggregate.StopRule.log_odds_bar``): what the load shrink's agreement step divides when
the caller names no rule."""
DEFAULT_MAX_SAMPLES = 64
"""Every default tier's envelope: the samples a contested request may draw."""
DEFAULT_MAX_TOKENS_AFTER_FIRST_WAVE = 16384
"""Every default tier's envelope in tokens: what a sample after the first wave may think.
Above the p99 of production DeepSeek-R1 outputs (12,607 tokens, ServeGen), so a reasoning
model's long chains finish; a model that writes short answers never reaches it."""


def default_policy() -> BudgetPolicy:
    """Three tiers, each an envelope: a vote whose first wave stops it when it agrees and
    whose disagreement buys samples, under the stopping rule, up to the same maximum.

    The prior (the difficulty estimate) only sets how much unanimous evidence suffices
    (2, 3 or 4 agreeing samples) and the first wave's token cap; it never caps the samples
    a contested request may draw, nor how long the samples after its first wave may think
    (``DEFAULT_MAX_TOKENS_AFTER_FIRST_WAVE``), so a wrong estimate costs samples and
    tokens, not accuracy. A first-wave sample cut at its cap abstains (``Budget.forces``):
    the request goes on to samples that may think longer, forced to answer at their cap.
    """
    later = DEFAULT_MAX_TOKENS_AFTER_FIRST_WAVE
    return BudgetPolicy(
        tiers=(
            Tier(name="easy", max_difficulty=0.2, max_tokens=1024,
                 max_tokens_after_first_wave=later, max_samples=DEFAULT_MAX_SAMPLES,
                 initial_samples=2, strategy=Strategy.VOTE,
                 stop_on_first_wave_agreement=True),
            Tier(name="medium", max_difficulty=0.4, max_tokens=2048,
                 max_tokens_after_first_wave=later, max_samples=DEFAULT_MAX_SAMPLES,
                 initial_samples=3, strategy=Strategy.VOTE,
                 stop_on_first_wave_agreement=True),
            Tier(name="hard", max_difficulty=1.0, max_tokens=4096,
                 max_tokens_after_first_wave=later, max_samples=DEFAULT_MAX_SAMPLES,
                 initial_samples=4, strategy=Strategy.VOTE,
                 stop_on_first_wave_agreement=True),
        ),
        effort_tiers={Effort.LOW: "easy", Effort.MEDIUM: "medium", Effort.HIGH: "hard"},
    )  # fmt: skip


def assign_tier(estimate: DifficultyEstimate, effort: str, policy: BudgetPolicy) -> Tier:
    """The tier for a request: the estimate's band, bounded by ``effort`` (module rule 1)."""
    try:
        effort_value = Effort(effort)
    except ValueError as exc:
        allowed = ", ".join(e.value for e in Effort)
        raise PolicyError(f"reasoning_effort {effort!r} is not one of {allowed}") from exc
    index = next(
        (i for i, tier in enumerate(policy.tiers) if estimate.score <= tier.max_difficulty),
        len(policy.tiers) - 1,
    )
    mapped = policy.effort_tiers.get(effort_value)
    if mapped is not None:
        mapped_index = [tier.name for tier in policy.tiers].index(mapped)
        if effort_value is Effort.LOW:
            index = min(index, mapped_index)
        elif effort_value is Effort.HIGH:
            index = max(index, mapped_index)
        else:
            index = mapped_index
    return policy.tiers[index]


def assign_budget(
    estimate: DifficultyEstimate,
    effort: str,
    load: LoadState,
    policy: BudgetPolicy,
    requested_max_tokens: int | None = None,
    requested_max_samples: int | None = None,
    demand: Mapping[str, DemandModel] | None = None,
    rule_bar: float = DEFAULT_RULE_BAR,
) -> Budget:
    """The budget for one request (module rules 1-3); ``demand``: a tier's learned demand
    model (``demand_learning``), in place of the policy's, for the shrink and the
    expected tokens."""
    tier = assign_tier(estimate, effort, policy)
    model = (demand or {}).get(tier.name, policy.demand_model)
    max_tokens = _cap(tier.max_tokens, requested_max_tokens, "max_tokens")
    max_samples = _cap(tier.max_samples, requested_max_samples, "max_samples")
    shrink_reason, stop_scale = None, 1.0
    if load.shrinks:
        cause = "at replica ceiling" if load.at_ceiling else "while scaling up"
        first = min(tier.initial_samples, max_samples)
        expected = _expected_samples(tier.strategy, max_samples, first,
                                     model.extra_sample_ratio)  # fmt: skip
        adaptive = tier.strategy is Strategy.VOTE  # the only one a stopping rule ends
        max_samples, max_tokens, stop_scale, shrink_reason = _shrink(
            max_samples, max_tokens, load.pressure, policy.shrink_order, cause,
            first if adaptive else expected, expected - first if adaptive else 0.0,
            rule_bar)
    strategy = tier.strategy if max_samples > 1 else Strategy.SINGLE
    wave_size = 1 if strategy is Strategy.REVISE else min(tier.initial_samples, max_samples)
    later_tokens = (_later_tokens(tier, max_tokens, requested_max_tokens)
                    if max_samples > wave_size else None)  # fmt: skip
    budget = Budget(
        tier=tier.name,
        strategy=strategy,
        max_tokens_per_sample=max_tokens,
        max_samples=max_samples,
        wave_size=wave_size,
        max_tokens_after_first_wave=later_tokens,
        expected_tokens=0.0,
        shrunk=shrink_reason is not None,
        shrink_reason=shrink_reason,
        escalate_to=tier.escalate_to,
        stop_threshold=tier.stop_threshold,
        stop_margin=tier.stop_margin,
        stop_on_first_wave_agreement=tier.stop_on_first_wave_agreement,
        stop_scale=stop_scale,
        stop_min_lead=_agreement_floor(policy.shrink_order),
    )
    expected = expected_request_tokens(budget, model)
    return budget.model_copy(update={"expected_tokens": expected})


def expected_request_tokens(
    budget: Budget, model: DemandModel | None = None, *, samples_finished: int = 0,
    extra_sample_ratio: float | None = None,
) -> float:
    """Expected tokens a request with ``budget`` still generates after ``samples_finished``.

    Model (``DemandModel``): expected samples x expected tokens per sample, where a sample
    fills ``token_fill_ratio`` of ``max_tokens_per_sample``; ``single`` and ``best-of-n``
    run every sample they may, ``vote`` and ``revise`` run their first wave plus
    ``extra_sample_ratio`` of the rest. This weights each queued request by its budget in
    ``ponder_router_demand_tokens`` and in the autoscaler simulator. ``extra_sample_ratio``
    replaces the model's (the learned prior's estimate for this request, when it has one).
    """
    model = model or DemandModel()
    ratio = model.extra_sample_ratio if extra_sample_ratio is None else extra_sample_ratio
    samples = _expected_samples(budget.strategy, budget.max_samples, budget.wave_size, ratio)
    remaining = max(samples - samples_finished, 0.0)
    return remaining * model.token_fill_ratio * budget.max_tokens_per_sample


def _later_tokens(tier: Tier, max_tokens: int, requested: int | None) -> int | None:
    """The cap of samples after the first wave: the tier's, lowered by the client's
    ``max_tokens``; None when it would not exceed ``max_tokens`` (nor when a load shrink
    lowered the tokens: under pressure the envelope does not grow)."""
    later = tier.max_tokens_after_first_wave
    if later is None or max_tokens < min(tier.max_tokens, requested or tier.max_tokens):
        return None
    later = min(later, requested) if requested is not None else later
    return later if later > max_tokens else None


def _expected_samples(strategy: Strategy, max_samples: int, wave_size: int,
                      extra_sample_ratio: float) -> float:  # fmt: skip
    """Samples a request is expected to draw (``DemandModel``): ``single`` and
    ``best-of-n`` every sample they may, ``vote`` and ``revise`` their first wave plus
    ``extra_sample_ratio`` of the rest."""
    if strategy in (Strategy.SINGLE, Strategy.BEST_OF_N):
        return float(max_samples)
    return wave_size + extra_sample_ratio * (max_samples - wave_size)


def _agreement_floor(order: tuple[ShrinkStep, ...]) -> int:
    """The least lead a shrunk stopping rule needs: the agreement step's floor."""
    return next((s.floor for s in order if s.resource is ShrinkResource.AGREEMENT), 1)


def _cap(tier_value: int, requested: int | None, name: str) -> int:
    """A client's limit lowers the tier's value, never raises it."""
    if requested is None:
        return tier_value
    if requested < 1:
        raise PolicyError(f"requested {name} must be at least 1, got {requested}")
    return min(tier_value, requested)


AGREEMENT_RELIEF_EXPONENT = 0.75
"""A stopping bar divided by s is counted as shortening the extra samples by s ** this,
not s: a contested request's lead grows slowly whatever the bar, and later waves
overshoot. Set by hand in the fleet simulator's GPU-quota runs on the Llama-2 samples
(counted as s, the shrink under-delivered and missed the SLO; as s ** 0.5 it cut more
than capping samples alone). A rough model: the step is not in the default order."""
_MAX_STOP_SCALE = 1000.0
"""Bound of the agreement step's divisor (a floor of one vote sets no other bound)."""


class _Shrunk(NamedTuple):
    max_samples: int
    max_tokens: int
    stop_scale: float
    reason: str | None


def _shrink(
    max_samples: int, max_tokens: int, pressure: float, order: tuple[ShrinkStep, ...],
    cause: str, wave_size: float, extra_samples: float, rule_bar: float,
) -> _Shrunk:
    """Divide the expected samples x tokens by ``pressure``, step by step, respecting each
    floor (module rule 3). A request is expected to draw its first wave plus
    ``extra_samples``: the agreement step divides the agreement the stopping rule needs
    (``rule_bar``, in log-odds; never below what a unanimous lead of its floor gives,
    ln(2^floor - 1)), counted as dividing the extra samples by that divisor to the power
    ``AGREEMENT_RELIEF_EXPONENT``; the samples step caps what is still expected, the
    tokens step the cap."""
    left = pressure
    expected = wave_size + extra_samples
    stop_scale = 1.0
    changes: list[str] = []
    for step in order:
        if left <= 1.0:
            break
        if step.resource is ShrinkResource.AGREEMENT:
            target = expected / left
            relief = extra_samples / (target - wave_size) if target > wave_size else math.inf
            floor_bar = math.log(2.0**step.floor - 1.0) if step.floor > 1 else 0.0
            stop_scale = min(relief ** (1.0 / AGREEMENT_RELIEF_EXPONENT),
                             rule_bar / floor_bar if floor_bar > 0 else math.inf,
                             _MAX_STOP_SCALE)  # fmt: skip
            if stop_scale <= 1.0 or extra_samples <= 0.0:
                stop_scale = 1.0
                continue
            shrunk = wave_size + extra_samples / stop_scale**AGREEMENT_RELIEF_EXPONENT
            left *= shrunk / expected
            expected = shrunk
            changes.append(f"stopping bar / {stop_scale:.2f}")
            continue
        current = max_samples if step.resource is ShrinkResource.SAMPLES else max_tokens
        basis = expected if step.resource is ShrinkResource.SAMPLES else float(current)
        reduced = max(math.ceil(basis / left), min(step.floor, current))
        if reduced >= current:
            continue
        left *= min(reduced / basis, 1.0)
        changes.append(f"{step.resource.value} {current}->{reduced}")
        if step.resource is ShrinkResource.SAMPLES:
            max_samples = reduced
        else:
            max_tokens = reduced
    if not changes:
        return _Shrunk(max_samples, max_tokens, 1.0, None)
    reason = f"pressure {pressure:.2f} {cause}: " + ", ".join(changes)
    return _Shrunk(max_samples, max_tokens, stop_scale, reason)
