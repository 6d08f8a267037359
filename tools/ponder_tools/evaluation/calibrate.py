"""Calibrate budget tiers from evaluation data: bins, curves, allocation, policy.

Role: the engine of ``ponder calibrate``. From one model's samples (and optionally a
larger model's, for a cascade) it

1. replays candidate operating points over every problem (``build_table``): adaptive
   vote with each sample cap, under each stopping rule of ``stop_kinds`` (the beta rule
   and the margin rule, a sequential probability ratio test) at each of its candidate
   thresholds or margins, carried by the tier (``Tier.stop_threshold``,
   ``Tier.stop_margin``; the router's ``should_stop``/``plan_next_wave``, first wave
   just large enough to stop), and, where the data carry scores, best-of-n by score with
   each sample cap, drawing all at once or, under each candidate ``score_threshold`` of
   the service's stop rule, one at a time until a sample scores that high; on each model.
   The thresholds include Adaptive-Consistency's (``suite.AC_THRESHOLDS``) and the caps
   go up to all of a problem's samples, so every Adaptive-Consistency configuration is a
   one-tier policy here, and a tiered policy can run a different one per bin. Each
   service rule (kind and score threshold) is a table of its own, since a service runs
   one;
2. splits problems into train and test by a seeded hash of their ids (``split_ids``);
3. scores every question with the router's estimator (``difficulty`` default weights,
   what the router runs) and compares on the test split how well that prompt-only score
   predicts difficulty (AUROC for "pass@1 < 0.5", Spearman against the error rate) with
   weights refitted on train (``difficulty.fit_logistic``): ``compare_estimators``. The
   weights with the higher test AUROC are the ones the policy ships (``solve``'s
   ``weights``; the default ones need no ``estimator`` block), and every later step
   scores problems with them, since the router cuts tiers on the score it computes;
4. bins train problems by difficulty two ways: by the estimator's score (deployable: a
   bin becomes a tier's ``maxDifficulty`` band; one bin when the score does not rank the
   train problems by error rate at significance ``signal_p_value``, since tiers cut on a
   score without signal only add noise) and by oracle pass@1 quantiles (Snell et al.
   2024; needs the answers, so it is a bound, not a policy); each bin's curve is the
   mean accuracy and compute of every candidate over its train problems: the bin's
   single-sample accuracy, plus each candidate's gain over it, each shrunk towards its
   all-bins mean by how much the bins really differ (empirical Bayes), so bins that carry
   no signal cannot be fitted to noise. Each candidate then competes with its accuracy
   less ``selection_se`` standard errors of its (shrunk) difference to its family's
   full-compute answer on its model (maj@all samples for votes, best-of-all by score
   for best-of-n): picking the best of many candidates by their train means favours the
   lucky ones (the winner's curse), most of all among the many near-equal caps and
   thresholds that differ from the full-compute answer on a few problems (e.g. caps of
   10 and 40 samples); such a candidate displaces one closer to its family's
   full-compute answer only by more than its noise;
5. allocates compute across bins (``allocate``: concave hull + greedy marginal gain) for
   a compute budget, a target accuracy, or by default the least compute matching
   maj@all-samples on train within a tolerance (less a margin for the policy's noise
   against its strategies' own full-compute answers), for each service rule (stopping
   kind and best-of-n score threshold: one service-wide setting), and keeps the one that
   needs least compute (or, on a budget, gives most accuracy);
6. turns the chosen points into a ``BudgetPolicy`` (``solve``): tiers, ``escalateTo``
   where the large model is the cheaper way to the accuracy wanted, ``maxTokens`` from
   the bin's token lengths (with trajectories, the smallest cap whose forced answers keep
   the full traces' accuracy within ``thinking_tolerance``: ``thinking.choose_cap``), and
   the demand model measured by replaying the policy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ponder_router.aggregate import StopRule, StopRuleKind, should_stop, tally
from ponder_router.budgets import (
    Budget,
    BudgetPolicy,
    DemandModel,
    Effort,
    Strategy,
    Tier,
    default_policy,
)
from ponder_router.difficulty import (
    DEFAULT_WEIGHTS,
    ConstantEstimator,
    EstimatorWeights,
    extract_features,
    fit_logistic,
    score_features,
)
from ponder_router.forcing import ForcingConfig

from .allocate import (
    AllocationStep,
    Point,
    allocate_accuracy,
    allocate_budget,
    greedy_path,
    upper_hull,
)
from .dataset import Dataset, EvalProblem
from .replay import (
    BoolArray,
    DecisionCache,
    FloatArray,
    IntArray,
    Outcome,
    ReplaySet,
    build_replay_set,
    replay_adaptive,
    replay_fixed,
    summarise,
)
from .stats import EmptyBinError, auroc, shrunk_bin_means, shrunk_bin_stats, spearman
from .suite import AC_THRESHOLDS, ponder_budgets
from .thinking import choose_cap, from_problem

CostUnit = Literal["samples", "tokens", "cost"]
UNCAPPED_TOKENS = 1 << 30
CRD_MAX_SAMPLES = 64
CRD_MAX_TIERS = 8
TOKEN_ROUNDING = 256
DEFAULT_THRESHOLDS = tuple(sorted({*AC_THRESHOLDS, 0.85}))
DEFAULT_GRID = (*range(1, 17), 20, 24, 32, 40, 48, 64)
DEFAULT_MARGINS = (2, 3, 4, 5, 6)
DEFAULT_SCORE_QUANTILES = (0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)
"""Score thresholds to try, as quantiles of all samples' scores. A model that is right
nine times in ten has its wrong samples in the bottom tenth: the thresholds that stop
on most first samples and catch the wrong ones lie there."""


class CalibrationError(ValueError):
    """The data cannot support the calibration asked for; the message says why."""


@dataclass(frozen=True)
class ModelData:
    """One model's samples; ``service`` names its ReasoningService for ``escalateTo``."""

    service: str
    dataset: Dataset
    price_per_token: float = 1.0


@dataclass(frozen=True)
class TierStop:
    """A vote tier's own stopping setting: a beta threshold or a margin (or neither)."""

    threshold: float | None = None
    margin: int | None = None


@dataclass(frozen=True)
class CalibrationConfig:
    bins: int = 5
    test_fraction: float = 0.3
    seed: int = 0
    orderings: int = 20
    cost_unit: CostUnit = "samples"
    budget: float | None = None
    target_accuracy: float | None = None
    match_within: float = 0.001
    margin_se: float = 1.0
    signal_p_value: float = 0.05
    stop_kinds: tuple[StopRuleKind, ...] = (StopRuleKind.SETTLED, StopRuleKind.BETA,
                                            StopRuleKind.MARGIN)  # fmt: skip
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    margins: tuple[int, ...] = DEFAULT_MARGINS
    window: int = 5
    token_quantile: float = 1.0
    default_max_tokens: int = 4096
    thinking_tolerance: float = 0.005
    """With trajectories, a tier's maxTokens is the smallest cap whose forced-answer accuracy
    is within this of the full traces' (``thinking.choose_cap``)."""
    verifier_model: str | None = None
    sample_grid: tuple[int, ...] = DEFAULT_GRID
    selection_se: float = 2.0
    score_quantiles: tuple[float, ...] = DEFAULT_SCORE_QUANTILES

    def service_rule(self, kind: StopRuleKind,
                     score_threshold: float | None = None) -> StopRule:  # fmt: skip
        """A service-wide rule; calibrated vote tiers carry their own threshold or margin."""
        return StopRule(kind=kind, window=self.window, score_threshold=score_threshold)

    def tier_stops(self, kind: StopRuleKind) -> list[TierStop]:
        """The stopping settings a vote tier may take under ``kind``."""
        if kind in (StopRuleKind.BETA, StopRuleKind.SETTLED):
            return [TierStop(threshold=t) for t in self.thresholds]
        if kind is StopRuleKind.MARGIN:
            return [TierStop(margin=m) for m in self.margins]
        return [TierStop()]


@dataclass(frozen=True)
class Candidate:
    """One operating point on one model; per-problem means over orderings."""

    model: int
    strategy: Strategy
    max_samples: int
    initial_samples: int
    accuracy: FloatArray
    samples: FloatArray
    tokens: FloatArray
    cost: FloatArray
    stop_threshold: float | None = None  # the vote tier's beta threshold
    verifier_calls: FloatArray | None = None
    stop_margin: int | None = None  # the vote tier's margin-rule lead

    def describe(self, models: Sequence[ModelData]) -> dict[str, Any]:
        out: dict[str, Any] = {"model": models[self.model].service,
                               "strategy": self.strategy.value,
                               "max_samples": self.max_samples,
                               "initial_samples": self.initial_samples}  # fmt: skip
        if self.stop_threshold is not None:
            out["stop_threshold"] = self.stop_threshold
        if self.stop_margin is not None:
            out["stop_margin"] = self.stop_margin
        return out

    def spend(self, unit: CostUnit) -> FloatArray:
        return self.samples if unit == "samples" else self.tokens if unit == "tokens" \
            else self.cost  # fmt: skip


@dataclass(frozen=True)
class Binning:
    """Bins by a difficulty value (higher is harder); bin i holds values <= ``edges[i]``."""

    kind: str
    edges: tuple[float, ...]

    def assign(self, values: FloatArray) -> IntArray:
        return np.searchsorted(np.asarray(self.edges[:-1]), values, side="left").astype(np.int64)

    @property
    def count(self) -> int:
        return len(self.edges)


@dataclass(frozen=True)
class CandidateTable:
    """Every candidate replayed over every problem, and each problem's difficulty data."""

    models: tuple[ModelData, ...]
    problems: tuple[tuple[EvalProblem, ...], ...]  # per model, aligned by id
    ids: tuple[str, ...]
    features: tuple[dict[str, float], ...]
    scores: FloatArray  # the router's estimator: default weights, or those ``solve`` ships
    pass1: FloatArray  # the serving model's pass@1
    maj_all: FloatArray  # the serving model's maj@all accuracy, per problem
    candidates: dict[StopRule, list[Candidate]]  # by service rule (its score threshold)
    anchors: dict[tuple[int, Strategy], FloatArray]  # per model: maj@all, best-of-all
    orderings: int
    seed: int


@dataclass
class BinningResult:
    binning: Binning
    bins: IntArray
    curves: list[list[Point]]
    hulls: list[list[Point]]
    weights: list[float]
    step: AllocationStep
    reached: bool  # the step meets the target accuracy (always, on a budget)
    assured_accuracy: float  # train accuracy, less the margin when matching maj@all
    penalties: list[FloatArray] = field(default_factory=list)  # per bin, per candidate

    def chosen(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return [candidates[self.hulls[b][self.step.choice[b]].label]
                for b in range(self.binning.count)]  # fmt: skip


@dataclass
class Solution:
    """A calibrated policy and how it was reached."""

    rule: StopRule
    policy: BudgetPolicy
    predicted: BinningResult
    oracle: BinningResult
    candidates: list[Candidate]
    reference_accuracy: float
    per_rule: list[dict[str, Any]] = field(default_factory=list)
    signal: dict[str, Any] = field(default_factory=dict)


# -- candidates ---------------------------------------------------------------------------


def unanimous_votes_needed(budget: Budget, rule: StopRule) -> int:
    """Fewest agreeing samples after which the router's ``should_stop`` stops."""
    for k in range(1, budget.max_samples + 1):
        if should_stop(tally(["a"] * k), rule, budget).stop:
            return k
    return budget.max_samples


def vote_tier(m: int, rule: StopRule, max_tokens: int = UNCAPPED_TOKENS,
              name: str = "candidate", stop: TierStop | None = None) -> Tier:  # fmt: skip
    """A tier voting with up to ``m`` samples at its own beta threshold or margin
    (``stop``; the rule's where unset), its first wave just large enough to stop."""
    if m == 1:
        return Tier(name=name, max_difficulty=1.0, max_tokens=max_tokens, max_samples=1,
                    initial_samples=1, strategy=Strategy.SINGLE)  # fmt: skip
    stop = stop or TierStop()
    probe = Budget(tier=name, strategy=Strategy.VOTE, max_tokens_per_sample=max_tokens,
                   max_samples=m, wave_size=1, expected_tokens=0.0,
                   stop_threshold=stop.threshold, stop_margin=stop.margin)  # fmt: skip
    return Tier(name=name, max_difficulty=1.0, max_tokens=max_tokens, max_samples=m,
                initial_samples=unanimous_votes_needed(probe, rule), strategy=Strategy.VOTE,
                stop_threshold=stop.threshold, stop_margin=stop.margin)  # fmt: skip


def best_of_n_tier(m: int, rule: StopRule, max_tokens: int = UNCAPPED_TOKENS,
                   name: str = "candidate") -> Tier:  # fmt: skip
    """A best-of-n tier of up to ``m`` samples: all at once, or one at a time when the
    rule stops on a verifier score."""
    initial = m if rule.score_threshold is None else 1
    return Tier(name=name, max_difficulty=1.0, max_tokens=max_tokens, max_samples=m,
                initial_samples=initial, strategy=Strategy.BEST_OF_N)  # fmt: skip


def _candidate(model: int, tier: Tier, outcome: Outcome, rs: ReplaySet) -> Candidate:
    """Per-problem means; cost is tokens x price, or samples x price without tokens."""
    result = summarise(outcome, rs)
    spent = outcome.cost if rs.has_tokens else outcome.samples * rs.price.repeat(rs.orderings)
    calls = None if outcome.verifier_calls is None \
        else outcome.per_problem(outcome.verifier_calls, rs.orderings)  # fmt: skip
    return Candidate(model, tier.strategy, tier.max_samples, tier.initial_samples,
                     result.problem_accuracy, result.problem_samples, result.problem_tokens,
                     outcome.per_problem(spent, rs.orderings),
                     stop_threshold=tier.stop_threshold, verifier_calls=calls,
                     stop_margin=tier.stop_margin)  # fmt: skip


def score_thresholds(dataset: Dataset, quantiles: Sequence[float]) -> list[float]:
    """Candidate verifier score thresholds: quantiles of every sample's score (the
    scores only, never the answers; empty without scores)."""
    scores = [s for p in dataset.problems if p.scores is not None for s in p.scores]
    if not scores or not quantiles:
        return []
    values = np.quantile(np.asarray(scores, float), list(quantiles))
    return sorted({round(float(v), 4) for v in values})


def align(models: Sequence[ModelData]) -> tuple[list[list[EvalProblem]], list[str]]:
    """Each model's problems in the first model's order, on the ids all models share."""
    shared = [p.problem_id for p in models[0].dataset.problems]
    for m in models[1:]:
        theirs = {p.problem_id for p in m.dataset.problems}
        shared = [i for i in shared if i in theirs]
    if len(shared) < 4:
        raise CalibrationError("the models share fewer than 4 problems")
    lists = []
    for m in models:
        by_id = {p.problem_id: p for p in m.dataset.problems}
        lists.append([by_id[i] for i in shared])
    return lists, shared


def build_table(models: Sequence[ModelData], config: CalibrationConfig) -> CandidateTable:
    """Step 1 of the module docstring: every candidate over every problem."""
    per_model, ids = align(models)
    sets = [build_replay_set(m.dataset, orderings=config.orderings, seed=config.seed,
                             price=m.price_per_token, problems=probs)
            for m, probs in zip(models, per_model, strict=True)]  # fmt: skip
    constant = ConstantEstimator()

    def replayed(i: int, tier: Tier, rule: StopRule) -> Candidate:
        budgets, index = ponder_budgets(per_model[i], BudgetPolicy(tiers=(tier,)), constant)
        outcome = replay_adaptive(sets[i], budgets, index, rule, name=tier.name,
                                  family="candidate")  # fmt: skip
        return _candidate(i, tier, outcome, sets[i])

    if not config.stop_kinds:
        raise CalibrationError("no stopping rule to calibrate")
    votes: dict[StopRuleKind, list[Candidate]] = {}
    for kind in config.stop_kinds:
        plain = config.service_rule(kind)
        found = votes.setdefault(kind, [])
        for i, rs in enumerate(sets):
            grid = [m for m in config.sample_grid if 1 <= m <= min(rs.width, CRD_MAX_SAMPLES)]
            for t, stop in enumerate(config.tier_stops(kind)):
                for m in grid if t == 0 else [m for m in grid if m > 1]:  # one single-sample
                    found.append(replayed(i, vote_tier(m, plain, stop=stop), plain))
    table: dict[StopRule, list[Candidate]] = {}
    scored = [None, *score_thresholds(models[0].dataset, config.score_quantiles)] \
        if config.verifier_model is not None else [None]  # fmt: skip
    for score_threshold in scored:
        # best-of-n stops on the score alone: its candidates serve every vote rule alike
        rule = config.service_rule(config.stop_kinds[0], score_threshold)
        best: list[Candidate] = []
        for i, rs in enumerate(sets):
            if rs.scores is None:
                continue
            for m in (m for m in config.sample_grid if 1 < m <= min(rs.width, CRD_MAX_SAMPLES)):
                best.append(replayed(i, best_of_n_tier(m, rule), rule))
        for kind, found in votes.items():
            table[config.service_rule(kind, score_threshold)] = found + best
    features = tuple(extract_features(p.question) for p in per_model[0])
    anchors = {}
    for i, rs in enumerate(sets):
        anchors[i, Strategy.VOTE] = summarise(replay_fixed(rs, rs.width), rs).problem_accuracy
        if rs.scores is not None:
            anchors[i, Strategy.BEST_OF_N] = summarise(
                replay_fixed(rs, rs.width, by_score=True), rs).problem_accuracy
    return CandidateTable(
        models=tuple(models), problems=tuple(tuple(p) for p in per_model), ids=tuple(ids),
        features=features,
        scores=np.array([score_features(f, DEFAULT_WEIGHTS) for f in features]),
        pass1=np.array([p.pass_at_1 for p in per_model[0]]),
        maj_all=anchors[0, Strategy.VOTE], candidates=table, anchors=anchors,
        orderings=config.orderings, seed=config.seed,
    )  # fmt: skip


# -- split, estimator quality, bins -------------------------------------------------------


def split_ids(ids: Sequence[str], test_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Train and test ids: the test split is the ``test_fraction`` of ids with the lowest
    seeded hash (stable as problems are added or removed)."""
    if not 0.0 < test_fraction < 1.0:
        raise CalibrationError("test fraction must lie strictly between 0 and 1")
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    cut = min(max(1, round(len(ids) * test_fraction)), len(ids) - 1)
    return set(ranked[cut:]), set(ranked[:cut])


@dataclass(frozen=True)
class EstimatorComparison:
    """The router's default weights against weights refitted on the train problems, each
    judged on the test problems: AUROC for "pass@1 < 0.5" and Spearman's rho against the
    error rate (None where the test split cannot tell, e.g. it is empty)."""

    refit: EstimatorWeights
    auroc: dict[str, float | None]  # by "router_default_weights" / "refit_on_train"
    spearman: dict[str, float | None]
    test_problems: int
    test_hard_problems: int

    @property
    def refit_wins(self) -> bool:
        """The refitted weights rank the test problems strictly better than the defaults."""
        default, refit = self.auroc["router_default_weights"], self.auroc["refit_on_train"]
        return default is not None and refit is not None and refit > default

    @property
    def shipped(self) -> EstimatorWeights | None:
        """The weights a calibrated policy should carry; None: the router's defaults."""
        return self.refit if self.refit_wins else None


def compare_estimators(table: CandidateTable, train: BoolArray) -> EstimatorComparison:
    """Step 3 of the module docstring: refit on ``train``, compare both on the rest.

    Picking the winner on the test split spends one bit of it; the held-out replay that
    follows on the same split is that much less independent. ``cross_fit`` never does
    this: its held-out fold is the evaluation, so its folds keep the default weights.
    """
    test = ~train
    refit = fit_logistic([f for f, t in zip(table.features, train, strict=True) if t],
                         (1.0 - table.pass1[train]).tolist())  # fmt: skip
    refit_scores = np.array([score_features(f, refit) for f in table.features])
    hard = table.pass1 < 0.5
    named = (("router_default_weights", table.scores), ("refit_on_train", refit_scores))
    return EstimatorComparison(
        refit=refit,
        auroc={name: auroc(values[test], hard[test]) for name, values in named},
        spearman={name: spearman(values[test], 1.0 - table.pass1[test])
                  for name, values in named},
        test_problems=int(test.sum()), test_hard_problems=int((hard & test).sum()),
    )  # fmt: skip


def estimator_signal(table: CandidateTable, train: BoolArray) -> dict[str, Any]:
    """Does the router's score rank train problems by error rate at all? Spearman's rho
    and its one-sided p-value (normal approximation of the t statistic)."""
    rho = spearman(table.scores[train], 1.0 - table.pass1[train])
    n = int(train.sum())
    if rho is None or n < 4:
        return {"spearman_train": rho, "p_value": 1.0}
    t = rho * math.sqrt((n - 2) / max(1.0 - rho * rho, 1e-12))
    p_value = 0.5 * math.erfc(t / math.sqrt(2))
    return {"spearman_train": round(rho, 4), "p_value": round(p_value, 5)}


def quantile_binning(kind: str, values: FloatArray, bins: int, decimals: int = 4) -> Binning:
    """Equal-count bins of ``values``: edges are data quantiles rounded up, so each holds
    its own value; tied quantiles merge bins, and no bin is left empty."""
    scale = 10.0**decimals
    inner = np.quantile(values, np.arange(1, bins) / bins, method="inverted_cdf") \
        if bins > 1 else np.array([])  # fmt: skip
    top = 1.0 if kind == "predicted" else math.inf
    edges = sorted({math.ceil(float(e) * scale) / scale for e in inner})
    kept = [e for e in edges if e < top and (kind != "predicted" or e > 0.0)]
    while True:
        counts = np.bincount(Binning(kind, (*kept, top)).assign(values),
                             minlength=len(kept) + 1)  # fmt: skip
        empty = np.nonzero(counts == 0)[0]
        if not kept or empty.size == 0:
            return Binning(kind, (*kept, top))
        del kept[min(int(empty[0]), len(kept) - 1)]  # merge the empty bin with a neighbour


def anchor_of(candidate: Candidate,
              anchors: dict[tuple[int, Strategy], FloatArray]) -> FloatArray:  # fmt: skip
    """The full-compute answer of ``candidate``'s family on its model (module step 4)."""
    family = Strategy.BEST_OF_N if candidate.strategy is Strategy.BEST_OF_N else Strategy.VOTE
    return anchors.get((candidate.model, family), anchors[candidate.model, Strategy.VOTE])


def bin_allocation(binning: Binning, values: FloatArray, candidates: Sequence[Candidate],
                   train: BoolArray, config: CalibrationConfig, reference: FloatArray,
                   anchors: dict[tuple[int, Strategy], FloatArray] | None = None,
                   ) -> BinningResult:  # fmt: skip
    """Curves per bin over the train problems, their hulls, and the chosen allocation.

    ``reference`` is each problem's maj@all accuracy. Matching it (no budget, no target
    accuracy) takes the cheapest allocation whose train accuracy, less ``margin_se``
    paired standard errors against the full-compute answer of the strategy each problem
    gets (``anchor_of``: maj@all for votes, best-of-all by score for best-of-n; maj@all
    for every candidate without ``anchors``), is within ``match_within`` of maj@all's:
    the cheapest allocation that merely touches the target on train does so partly by
    luck and falls short on new problems. The noise that luck comes from is how far the
    stopped policy strays from its own full-compute answer; a verifier that disagrees
    with the majority on some problems and is right more often is no such noise, and
    measured against maj@all it would keep a policy that beats maj@all from ever
    matching it. (Accuracies here are the raw train means, on the same footing as
    maj@all's.)

    The curves, hulls and allocation use each candidate's accuracy less
    ``config.selection_se`` standard errors of its shrunk difference to its anchor
    (``anchor_of``; ``reference`` for every candidate without ``anchors``; module step 4;
    ``BinningResult.penalties``); a target accuracy or a budget's best accuracy is then
    met with that margin.
    """
    bins = binning.assign(values)
    base = min(candidates, key=lambda c: (c.model, float(c.spend(config.cost_unit).mean())))
    try:
        level = shrunk_bin_means(base.accuracy, bins, train, binning.count)
        acc = [level + shrunk_bin_means(c.accuracy - base.accuracy, bins, train, binning.count)
               for c in candidates]  # fmt: skip
        spend = [shrunk_bin_means(c.spend(config.cost_unit), bins, train, binning.count)
                 for c in candidates]  # fmt: skip
        penalties = [config.selection_se * shrunk_bin_stats(
            c.accuracy - (reference if anchors is None else anchor_of(c, anchors)),
            bins, train, binning.count)[1] for c in candidates]  # fmt: skip
    except EmptyBinError as exc:
        raise CalibrationError(str(exc)) from exc
    curves = [[Point(float(spend[i][b]), float(acc[i][b] - penalties[i][b]), i)
               for i in range(len(candidates))] for b in range(binning.count)]  # fmt: skip
    hulls = [upper_hull(c) for c in curves]
    weights = [float((train & (bins == b)).sum() / train.sum()) for b in range(binning.count)]
    path = greedy_path(hulls, weights)
    by_bin = [np.array([penalties[i][b] for i in range(len(candidates))])
              for b in range(binning.count)]  # fmt: skip
    if config.budget is not None:
        step = allocate_budget(path, config.budget)
        return BinningResult(binning, bins, curves, hulls, weights, step, True, step.accuracy,
                             by_bin)  # fmt: skip
    if config.target_accuracy is not None:
        step = allocate_accuracy(path, config.target_accuracy)
        reached = step.accuracy >= config.target_accuracy - 1e-12
        return BinningResult(binning, bins, curves, hulls, weights, step, reached,
                             step.accuracy, by_bin)  # fmt: skip
    target = float(reference[train].mean()) - config.match_within
    rows = np.nonzero(train)[0]
    lower = []
    for step in path:
        served = [candidates[hulls[b][step.choice[b]].label] for b in bins[rows]]
        picked = np.array([c.accuracy[p] for c, p in zip(served, rows, strict=True)])
        full = reference[rows] if anchors is None else np.array(
            [anchor_of(c, anchors)[p] for c, p in zip(served, rows, strict=True)])
        diff = picked - full
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        lower.append(float(picked.mean()) - config.margin_se * se)
        if lower[-1] >= target - 1e-12:
            return BinningResult(binning, bins, curves, hulls, weights, step, True, lower[-1],
                                 by_bin)  # fmt: skip
    best = int(np.argmax(lower))
    return BinningResult(binning, bins, curves, hulls, weights, path[best], False, lower[best],
                         by_bin)  # fmt: skip


# -- the policy ---------------------------------------------------------------------------


def token_cap(problems: Sequence[EvalProblem], quantile: float, default: int,
              thinking_tolerance: float | None = None) -> int:  # fmt: skip
    """A tier's ``maxTokens``: the ``quantile`` of its samples' tokens, rounded up; where
    every problem carries trajectories and ``thinking_tolerance`` is given, the thinking
    budget ``thinking.choose_cap`` picks (answers forced at the cap)."""
    traced = [s for p in problems for s in from_problem(p)]
    if thinking_tolerance is not None and problems and len(traced) == sum(
            p.sample_count for p in problems):  # fmt: skip
        return choose_cap(traced, tolerance=thinking_tolerance).cap_tokens
    tokens = [t for p in problems if p.tokens is not None for t in p.tokens]
    if not tokens:
        return default
    value = float(np.quantile(np.asarray(tokens, float), quantile))
    return max(TOKEN_ROUNDING, math.ceil(value / TOKEN_ROUNDING) * TOKEN_ROUNDING)


def build_policy(binning: Binning, chosen: Sequence[Candidate], models: Sequence[ModelData],
                 token_caps: Sequence[int], verifier_model: str | None = None,
                 ) -> BudgetPolicy:  # fmt: skip
    """Tiers from per-bin choices, adjacent equal choices merged (at most 8 tiers);
    best-of-n tiers are scored by ``verifier_model``."""
    groups: list[tuple[tuple[int, Strategy, int, int, float | None, int | None], float,
                       int]] = []  # fmt: skip
    for b, c in enumerate(chosen):
        signature = (c.model, c.strategy, c.max_samples, c.initial_samples, c.stop_threshold,
                     c.stop_margin)  # fmt: skip
        if groups and groups[-1][0] == signature:
            groups[-1] = (signature, binning.edges[b], max(groups[-1][2], token_caps[b]))
        else:
            groups.append((signature, binning.edges[b], token_caps[b]))
    if len(groups) > CRD_MAX_TIERS:
        raise CalibrationError(f"{len(groups)} tiers; a ReasoningService holds at most "
                               f"{CRD_MAX_TIERS}: use fewer bins")  # fmt: skip
    tiers = tuple(
        Tier(name=f"tier-{i + 1}", max_difficulty=min(edge, 1.0), max_tokens=cap,
             max_samples=m, initial_samples=initial, strategy=strategy,
             escalate_to=models[model].service if model > 0 else None,
             verifier_model=verifier_model if strategy is Strategy.BEST_OF_N else None,
             stop_threshold=threshold, stop_margin=margin)
        for i, ((model, strategy, m, initial, threshold, margin), edge, cap)
        in enumerate(groups)
    )  # fmt: skip
    names = [t.name for t in tiers]
    effort = {Effort.LOW: names[0], Effort.MEDIUM: names[len(names) // 2],
              Effort.HIGH: names[-1]}  # fmt: skip
    return BudgetPolicy(tiers=tiers, effort_tiers=effort,
                        shrink_order=default_policy().shrink_order)  # fmt: skip


def measure_demand(table: CandidateTable, train: BoolArray, policy: BudgetPolicy,
                   rule: StopRule, cache: DecisionCache | None = None) -> DemandModel:  # fmt: skip
    """The ``DemandModel`` the policy shows on the train problems it serves itself:
    tokens per launched sample over the cap, and the share of the samples past the first
    wave that adaptive requests launch."""
    problems = [p for p, t in zip(table.problems[0], train, strict=True) if t]
    budgets, index = ponder_budgets(problems, policy, scores=table.scores[train].tolist())
    local = np.array([budgets[i].escalate_to is None for i in index.tolist()])
    if not local.any():
        return DemandModel()
    served = [p for p, keep in zip(problems, local, strict=True) if keep]
    rs = build_replay_set(table.models[0].dataset, orderings=table.orderings, seed=table.seed,
                          problems=served)  # fmt: skip
    outcome = replay_adaptive(rs, budgets, index[local], rule, name="demand", family="ponder",
                              cache=cache, forcing=ForcingConfig())  # fmt: skip
    b_row = np.repeat(index[local], rs.orderings)
    caps = np.array([b.max_tokens_per_sample for b in budgets], float)[b_row]
    fill = float((outcome.tokens / outcome.samples / caps).mean()) if rs.has_tokens else 0.6
    waves = np.array([b.wave_size for b in budgets], float)[b_row]
    most = np.array([b.max_samples for b in budgets], float)[b_row]
    adaptive = most > waves
    extra = 0.3
    if adaptive.any():
        over = (outcome.samples[adaptive] - waves[adaptive]) / (most - waves)[adaptive]
        extra = float(over.mean())
    return DemandModel(token_fill_ratio=round(min(max(fill, 0.001), 1.0), 3),
                       extra_sample_ratio=round(min(max(extra, 0.0), 1.0), 3))  # fmt: skip


def solve(table: CandidateTable, train: BoolArray, config: CalibrationConfig,
          weights: EstimatorWeights | None = None,
          cache: DecisionCache | None = None) -> Solution:  # fmt: skip
    """Steps 4-6 of the module docstring on the ``train`` problems.

    ``weights`` (``EstimatorComparison.shipped``) replace the router's default estimator
    weights: problems are scored with them before the signal test, the bins and the
    demand replay, so the tiers' ``maxDifficulty`` edges are cut on the score the router
    will compute, and the policy carries them as its ``estimator``. (For weights fitted
    on ``train`` the signal test is in-sample; they only ship after beating the defaults
    on the test split.)
    """
    if len(table.models) > 1 and config.cost_unit == "samples":
        raise CalibrationError("comparing models needs cost (tokens x price), not samples")
    if weights is not None:
        table = replace(table, scores=np.array([score_features(f, weights)
                                                for f in table.features]))  # fmt: skip
    reference = float(table.maj_all[train].mean())
    use_bon = config.verifier_model is not None
    signal = estimator_signal(table, train)
    bins = config.bins if signal["p_value"] <= config.signal_p_value else 1
    predicted = quantile_binning("predicted", table.scores[train], bins)
    oracle = quantile_binning("oracle", 1.0 - table.pass1[train], config.bins)
    best: tuple[tuple[float, float], StopRule, list[Candidate], BinningResult] | None = None
    per_rule = []
    for rule, found in table.candidates.items():
        if rule.score_threshold is not None and not use_bon:
            continue
        allowed = [c for c in found if c.strategy is not Strategy.BEST_OF_N or use_bon]
        result = bin_allocation(predicted, table.scores, allowed, train, config, table.maj_all,
                                table.anchors)  # fmt: skip
        step = result.step
        if config.budget is not None:
            rank = (0.0, -step.accuracy)
        elif result.reached:
            rank = (0.0, step.cost)
        else:
            rank = (1.0, -result.assured_accuracy)
        per_rule.append({"stop_rule": rule.model_dump(mode="json"),
                         "train_accuracy": round(step.accuracy, 5),
                         "assured_train_accuracy": round(result.assured_accuracy, 5),
                         "reached": result.reached, "train_cost": round(step.cost, 4)})  # fmt: skip
        if best is None or rank < best[0]:
            best = (rank, rule, allowed, result)
    assert best is not None
    _, rule, allowed, predicted_result = best
    oracle_result = bin_allocation(oracle, 1.0 - table.pass1, allowed, train, config,
                                   table.maj_all, table.anchors)  # fmt: skip
    chosen = predicted_result.chosen(allowed)
    caps = []
    for b, c in enumerate(chosen):
        in_bin = [table.problems[c.model][p] for p in range(len(table.ids))
                  if train[p] and predicted_result.bins[p] == b]  # fmt: skip
        caps.append(token_cap(in_bin, config.token_quantile, config.default_max_tokens,
                              config.thinking_tolerance))  # fmt: skip
    policy = build_policy(predicted, chosen, table.models, caps, config.verifier_model)
    demand = measure_demand(table, train, policy, rule, cache)
    policy = policy.model_copy(update={"demand_model": demand, "estimator": weights})
    shipped = "router_default_weights" if weights is None else "refit_on_train"
    return Solution(rule, BudgetPolicy.model_validate(policy.model_dump(by_alias=True)),
                    predicted_result, oracle_result, allowed, reference, per_rule,
                    {**signal, "bins_used": predicted.count, "weights": shipped})


def budgets_spec(policy: BudgetPolicy, rule: StopRule, verifier: str | None) -> dict[str, Any]:
    """The policy as a ReasoningService ``spec.budgets`` section (paste into the CRD)."""
    tiers = []
    for t in policy.tiers:
        tier: dict[str, Any] = {"name": t.name, "maxDifficulty": t.max_difficulty,
                                "maxTokens": t.max_tokens, "maxSamples": t.max_samples,
                                "initialSamples": t.initial_samples,
                                "strategy": t.strategy.value}  # fmt: skip
        if t.escalate_to:
            tier["escalateTo"] = t.escalate_to
        if t.strategy is Strategy.BEST_OF_N and (t.verifier_model or verifier):
            tier["verifierModel"] = t.verifier_model or verifier
        if t.stop_threshold is not None:
            tier["stopThreshold"] = t.stop_threshold
        if t.stop_margin is not None:
            tier["stopMargin"] = t.stop_margin
        tiers.append(tier)
    stopping: dict[str, Any] = {
        "rule": "none" if rule.kind is StopRuleKind.NEVER else rule.kind.value,
        "threshold": rule.threshold, "window": rule.window, "margin": rule.margin}
    if rule.score_threshold is not None:
        stopping["scoreThreshold"] = rule.score_threshold
    spec: dict[str, Any] = {
        "tiers": tiers,
        "effort": {e.value: name for e, name in policy.effort_tiers.items()},
        "stopping": stopping,
    }  # fmt: skip
    if policy.estimator is not None:
        spec["estimator"] = policy.estimator.model_dump(by_alias=True)
    return spec
