"""Offline replay: every problem, many random sample orders, through the router's policy.

Role: the engine behind ``ponder evaluate`` and ``ponder calibrate``. A ``ReplaySet``
holds a dataset as arrays: for each problem, ``orderings`` seeded random orders of its
samples (an order is the order samples *finish*; the answer of a sample does not depend
on when it finishes), each sample's answer as a small integer (``-1`` abstains), its
tokens and score. From these it computes, once, the state after every prefix of every
order: leader, leader and runner-up votes, votes, the run of equal trailing votes, and
the best-scored answer and its score. Each policy is then a cheap pass over those arrays:

- ``replay_fixed``: maj@N and best-of-N for every N.
- ``replay_adaptive``: one ``Budget`` per problem (from ``budgets.assign_budget`` for
  Ponder's policies) and a ``StopRule``. After each finished sample the router's own
  ``aggregate.should_stop`` decides; with ``waves=True`` the router's
  ``aggregate.plan_next_wave`` says how many samples are launched, and samples still
  running at the stop are cancelled, as ``executor`` does. The answer is the vote's
  leader, the best-scored sample's for ``best-of-n`` (the leader when the data carry
  no scores, as the router falls back to a vote without a verifier), the last sample's
  for ``revise``. A ``best-of-n`` request under a rule with a ``score_threshold`` stops
  once the best score of a finished sample with an answer reaches it, as the router's
  executor does when it scores each sample as it finishes.

Both pure functions are called for real, once per distinct state: ``should_stop`` reads
only the sample count, votes, leader and runner-up votes, the trailing run of the state
and, for ``best-of-n`` with a score threshold, the best score so far (and
``plan_next_wave`` also the launched count), so their answers are cached by those
numbers; every cache miss calls the function on the real ``Tally`` (and best score) of
a prefix that produced the state. ``audit`` checks the array state against ``aggregate.tally``,
``majority_vote`` and ``best_of_n`` on random prefixes.

Accounting: *samples* counts samples launched (a cancelled sample is charged in full);
*tokens* counts finished samples' tokens plus, for each cancelled one, what it wrote
before the stop, taken as min(its tokens, the stopping sample's tokens); a sample longer
than its cap (``Budget.sample_max_tokens``) is cut off there and abstains, unless budget
forcing is on (``forcing``), its budget forces it (``Budget.forces``) and the data hold
the sample's trajectory: then it votes with its answer at the cap (its last checkpoint
within it, ``EvalProblem.answer_at``) and costs the cap plus the forcing answer allowance,
as the router's executor does. *Verifier
calls* count the samples a verifier scores (compute too): for ``best-of-n`` by score,
every finished sample with an answer, as the router scores them. *Waves* count the
sequential rounds of launches, the latency cost: maj@N and best-of-N launch once, the
one-at-a-time baselines once per sample, Ponder's policies once per ``plan_next_wave``
that starts at least one sample (``plan.replay_request`` counts the same).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ponder_router.aggregate import (
    StopRule,
    StopRuleKind,
    Tally,
    best_of_n,
    majority_vote,
    plan_next_wave,
    should_stop,
    tally,
)
from ponder_router.budgets import Budget, Strategy
from ponder_router.forcing import ForcingConfig

from .dataset import Dataset, EvalProblem

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
PAD = -2  # past the end of a problem's samples
ABSTAIN = -1


class ReplayError(ValueError):
    """A replay was asked for something its data cannot give."""


@dataclass(frozen=True)
class PrefixState:
    """``[rows, width]`` arrays; column ``k - 1`` is the state after ``k`` finished samples."""

    leader: IntArray
    leader_votes: IntArray
    runner_up_votes: IntArray
    votes: IntArray
    streak: IntArray
    best_scored: IntArray | None
    best_score: FloatArray | None  # the best-scored answer's score; -inf before any


@dataclass(frozen=True)
class TrajectoryArrays:
    """Each sample's checkpoints, ``[rows, width, points]`` in each row's finishing order."""

    tokens: FloatArray  # prefix tokens of each checkpoint (inf past a sample's last)
    keys: IntArray  # the answer id at each checkpoint; -1 abstains
    present: BoolArray  # [rows, width]: the sample has a trajectory

    def at_cap(self, caps: FloatArray) -> IntArray:
        """``[rows, width]`` answer ids forced at each sample's cap (``caps``, ``[rows,
        width]``; ``EvalProblem.answer_at``)."""
        reached = (self.tokens <= caps[:, :, None]).sum(axis=2)
        last = np.maximum(reached - 1, 0)
        picked: IntArray = np.take_along_axis(self.keys, last[..., None], axis=2)[..., 0]
        return picked


@dataclass(frozen=True)
class ReplaySet:
    """A dataset as arrays, ``orderings`` rows per problem (row = problem x orderings + r)."""

    problem_ids: tuple[str, ...]
    orderings: int
    counts: IntArray  # [P] samples per problem
    keys: IntArray  # [rows, width] answer ids in finishing order; -1 abstains, -2 padding
    correct: IntArray  # [P] id of the reference answer, -1 when no sample gives it
    tokens: FloatArray  # [rows, width]; zeros when the data has none
    scores: FloatArray | None
    price: FloatArray  # [P] cost per token of the model that wrote each problem's samples
    has_tokens: bool
    state: PrefixState
    trajectory: TrajectoryArrays | None = None  # None: no problem has trajectories

    @property
    def problems(self) -> int:
        return len(self.problem_ids)

    @property
    def width(self) -> int:
        return int(self.keys.shape[1])

    @property
    def rows(self) -> int:
        return int(self.keys.shape[0])

    def row_problem(self) -> IntArray:
        return np.repeat(np.arange(self.problems), self.orderings)


def build_replay_set(
    dataset: Dataset,
    *,
    orderings: int = 50,
    seed: int = 0,
    price: Sequence[float] | float = 1.0,
    problems: Sequence[EvalProblem] | None = None,
) -> ReplaySet:
    """Arrays for ``dataset`` (or ``problems``) with ``orderings`` seeded orders each."""
    chosen = tuple(problems if problems is not None else dataset.problems)
    if not chosen:
        raise ReplayError("no problems to replay")
    if orderings < 1:
        raise ReplayError("orderings must be at least 1")
    counts = np.array([p.sample_count for p in chosen], dtype=np.int64)
    width = int(counts.max())
    base = np.full((len(chosen), width), PAD, dtype=np.int64)
    correct = np.full(len(chosen), -1, dtype=np.int64)
    has_tokens = all(p.tokens is not None for p in chosen)
    has_scores = all(p.scores is not None for p in chosen)
    tok = np.zeros((len(chosen), width))
    sco = np.zeros((len(chosen), width))
    points = max((len(c) for p in chosen for c in p.checkpoints or ()), default=0)
    cp_tok = np.full((len(chosen), width, max(points, 1)), np.inf)
    cp_key = np.full((len(chosen), width, max(points, 1)), ABSTAIN, dtype=np.int64)
    cp_has = np.zeros((len(chosen), width), dtype=np.bool_)
    for i, p in enumerate(chosen):
        ids: dict[str, int] = {}
        row = [ABSTAIN if k is None else ids.setdefault(k, len(ids)) for k in p.answer_keys]
        base[i, : len(row)] = row
        for j, trace in enumerate(p.checkpoints or ()):
            cp_has[i, j] = True
            cp_tok[i, j, : len(trace)] = [t for t, _ in trace]
            cp_key[i, j, : len(trace)] = [ABSTAIN if k is None else ids.setdefault(k, len(ids))
                                          for _, k in trace]  # fmt: skip
        correct[i] = ids.get(p.reference_key, -1)
        if has_tokens and p.tokens is not None:
            tok[i, : len(row)] = p.tokens
        if has_scores and p.scores is not None:
            sco[i, : len(row)] = p.scores
    rng = np.random.default_rng(seed)
    counts_rows = np.repeat(counts, orderings)
    draw = rng.random((len(chosen) * orderings, width))
    draw[np.arange(width)[None, :] >= counts_rows[:, None]] = np.inf  # padding stays last
    order = np.argsort(draw, axis=1, kind="stable")
    source = np.repeat(np.arange(len(chosen)), orderings)[:, None]
    keys = base[source, order]
    tokens = tok[source, order]
    scores = sco[source, order] if has_scores else None
    prices = np.broadcast_to(np.asarray(price, dtype=np.float64), (len(chosen),)).copy()
    trajectory = None
    if points:
        trajectory = TrajectoryArrays(tokens=cp_tok[source, order], keys=cp_key[source, order],
                                      present=cp_has[source, order])  # fmt: skip
    return ReplaySet(
        problem_ids=tuple(p.problem_id for p in chosen), orderings=orderings, counts=counts,
        keys=keys, correct=correct, tokens=tokens, scores=scores, price=prices,
        has_tokens=has_tokens, state=compute_prefix_state(keys, scores), trajectory=trajectory,
    )  # fmt: skip


def compute_prefix_state(keys: IntArray, scores: FloatArray | None = None) -> PrefixState:
    """The tally after every prefix, with ``aggregate.Tally``'s tie rule (first seen wins)."""
    rows, width = keys.shape
    span = max(int(keys.max()) + 1, 2)
    counts = np.zeros((rows, span), dtype=np.int64)
    first = np.full((rows, span), width + 1, dtype=np.int64)
    idx = np.arange(rows)
    lead = np.full(rows, -1, dtype=np.int64)
    top1 = np.zeros(rows, dtype=np.int64)
    top2 = np.zeros(rows, dtype=np.int64)
    votes = np.zeros(rows, dtype=np.int64)
    last = np.full(rows, -1, dtype=np.int64)
    streak = np.zeros(rows, dtype=np.int64)
    best_score = np.full(rows, -np.inf)
    best = np.full(rows, -1, dtype=np.int64)
    out = {name: np.empty((rows, width), dtype=np.int64)
           for name in ("leader", "lv", "rv", "votes", "streak", "best")}  # fmt: skip
    best_scores = np.full((rows, width), -np.inf)
    for j in range(width):
        key = keys[:, j]
        valid = key >= 0
        r, k = idx[valid], key[valid]
        counts[r, k] += 1
        first[r, k] = np.minimum(first[r, k], j)
        c = counts[r, k]
        old_lead, old_top1, old_top2 = lead[r], top1[r], top2[r]
        is_lead = k == old_lead
        overtakes = ~is_lead & (c > old_top1)
        ties = ~is_lead & (c == old_top1)
        safe_lead = np.maximum(old_lead, 0)
        earlier = first[r, k] < first[r, safe_lead]
        new_lead = np.where(overtakes | (ties & earlier), k, old_lead)
        new_top1 = np.where(is_lead | overtakes, c, old_top1)
        new_top2 = np.where(overtakes, old_top1,
                            np.where(ties, c, np.where(is_lead, old_top2,
                                                       np.maximum(old_top2, c))))  # fmt: skip
        lead[r], top1[r], top2[r] = new_lead, new_top1, new_top2
        votes += valid
        streak[r] = np.where(k == last[r], streak[r] + 1, 1)
        last[r] = k
        if scores is not None:
            better = valid & (scores[:, j] > best_score)
            best_score = np.where(better, scores[:, j], best_score)
            best = np.where(better, key, best)
            best_scores[:, j] = best_score
        out["leader"][:, j], out["lv"][:, j], out["rv"][:, j] = lead, top1, top2
        out["votes"][:, j], out["streak"][:, j], out["best"][:, j] = votes, streak, best
    return PrefixState(
        leader=out["leader"], leader_votes=out["lv"], runner_up_votes=out["rv"],
        votes=out["votes"], streak=out["streak"],
        best_scored=out["best"] if scores is not None else None,
        best_score=best_scores if scores is not None else None,
    )  # fmt: skip


def prefix_tally(keys: IntArray, row: int, k: int) -> Tally:
    """The router's real ``Tally`` of the first ``k`` finished samples of ``row``."""
    return tally([None if v < 0 else str(v) for v in keys[row, :k].tolist()], "exact")


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Per-row results of one policy, averaged per problem and overall on demand."""

    name: str
    family: str
    correct: BoolArray  # [rows]
    samples: FloatArray  # launched
    completed: FloatArray
    tokens: FloatArray
    cost: FloatArray
    params: dict[str, object] = field(default_factory=dict)
    verifier_calls: FloatArray | None = None  # None: no verifier scores anything
    waves: FloatArray | None = None  # sequential launch rounds; None: not counted

    def per_problem(self, values: npt.NDArray[np.generic], orderings: int) -> FloatArray:
        means: FloatArray = np.asarray(values, dtype=np.float64).reshape(-1, orderings).mean(1)
        return means


@dataclass(frozen=True)
class PolicyResult:
    """One policy's averages over problems and orderings (accuracy in [0, 1])."""

    name: str
    family: str
    accuracy: float
    accuracy_se: float
    mean_samples: float
    mean_completed: float
    mean_tokens: float | None
    mean_cost: float | None
    params: dict[str, object]
    problem_accuracy: FloatArray
    problem_samples: FloatArray
    problem_tokens: FloatArray
    mean_verifier_calls: float = 0.0
    mean_waves: float | None = None  # sequential launch rounds, the latency cost

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "family": self.family, "params": self.params,
            "accuracy": round(self.accuracy, 6), "accuracy_se": round(self.accuracy_se, 6),
            "mean_samples": round(self.mean_samples, 4),
            "mean_completed_samples": round(self.mean_completed, 4),
            "mean_tokens": None if self.mean_tokens is None else round(self.mean_tokens, 2),
            "mean_cost": None if self.mean_cost is None else round(self.mean_cost, 4),
            "mean_verifier_calls": round(self.mean_verifier_calls, 4),
            "mean_waves": None if self.mean_waves is None else round(self.mean_waves, 4),
        }  # fmt: skip


def summarise(outcome: Outcome, rs: ReplaySet) -> PolicyResult:
    """Averages of ``outcome`` over ``rs``'s rows (each problem weighs the same)."""
    acc = outcome.per_problem(outcome.correct, rs.orderings)
    samples = outcome.per_problem(outcome.samples, rs.orderings)
    tokens = outcome.per_problem(outcome.tokens, rs.orderings)
    se = float(acc.std(ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else 0.0
    return PolicyResult(
        name=outcome.name, family=outcome.family, accuracy=float(acc.mean()), accuracy_se=se,
        mean_samples=float(samples.mean()),
        mean_completed=float(outcome.completed.mean()),
        mean_tokens=float(tokens.mean()) if rs.has_tokens else None,
        mean_cost=float(outcome.cost.mean()) if rs.has_tokens else None,
        params=dict(outcome.params), problem_accuracy=acc, problem_samples=samples,
        problem_tokens=tokens,
        mean_verifier_calls=0.0 if outcome.verifier_calls is None
        else float(outcome.per_problem(outcome.verifier_calls, rs.orderings).mean()),
        mean_waves=None if outcome.waves is None else float(outcome.waves.mean()),
    )  # fmt: skip


# -- fixed-size policies ------------------------------------------------------------------


def replay_fixed(rs: ReplaySet, n: int, *, by_score: bool = False) -> Outcome:
    """maj@n (or best-of-n by score): the first ``n`` finished samples of every order
    (all of a problem's samples when it has fewer)."""
    if by_score and rs.state.best_scored is None:
        raise ReplayError("best-of-n needs scores")
    per_row = np.repeat(np.minimum(rs.counts, n), rs.orderings)
    col = per_row - 1
    rows = np.arange(rs.rows)
    picked = rs.state.best_scored if by_score and rs.state.best_scored is not None \
        else rs.state.leader  # fmt: skip
    chosen = picked[rows, col]
    correct = (chosen >= 0) & (chosen == np.repeat(rs.correct, rs.orderings))
    tokens = np.cumsum(rs.tokens, axis=1)[rows, col]
    name = f"best-of-{n}" if by_score else f"maj@{n}"
    scored = np.cumsum(rs.keys >= 0, axis=1)[rows, col].astype(np.float64) if by_score \
        else None  # fmt: skip
    return Outcome(
        name=name, family="best-of-n" if by_score else "majority", correct=correct,
        samples=per_row.astype(np.float64), completed=per_row.astype(np.float64),
        tokens=tokens, cost=tokens * np.repeat(rs.price, rs.orderings), params={"n": n},
        verifier_calls=scored, waves=np.ones(rs.rows),
    )  # fmt: skip


# -- adaptive policies --------------------------------------------------------------------


class DecisionCache:
    """``should_stop`` and ``plan_next_wave`` answers by the numbers they read.

    Both read a budget only through ``max_samples``, ``wave_size``, ``strategy``,
    ``stop_threshold``, ``stop_margin`` and ``stop_on_first_wave_agreement``, and a tally
    only through its sample count,
    votes, leader and runner-up votes and the run of equal trailing votes (the window
    rules); should_stop
    also reads the best verifier score (best-of-n with a score threshold), plan_next_wave
    the launched count. Each cache miss calls the function itself on the real ``Tally``
    (and best score) of a prefix that has those numbers.
    """

    def __init__(self) -> None:
        self.answers: dict[tuple[object, ...], int] = {}
        self.calls = 0

    def lookup(self, kind: str, budgets: Sequence[Budget], rule: StopRule, keys: IntArray,
               rows: IntArray, k: int, launched: IntArray, numbers: IntArray,
               best_score: FloatArray | None = None) -> IntArray:  # fmt: skip
        """Answers for ``rows`` after ``k`` finished samples; ``numbers`` is ``[n, 7]``:
        budget index, launched, votes, leader votes, runner-up votes, capped trailing run,
        and the rank of the best score so far among these rows (0 where it is not read);
        ``best_score`` holds the scores themselves, which the cached answers are keyed on,
        so one cache serves many replays."""
        code = numbers[:, 0].copy()
        for column in range(1, numbers.shape[1]):
            code = code * (int(numbers[:, column].max(initial=0)) + 1) + numbers[:, column]
        _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        out = np.empty(len(first), dtype=np.int64)
        for i, at in enumerate(first.tolist()):
            row_numbers = numbers[at].tolist()
            budget = budgets[row_numbers[0]]
            score = None
            if best_score is not None and math.isfinite(best_score[at]):
                score = float(best_score[at])
            # The score's rank only groups rows within this call; the key holds the score.
            key = (kind, budget.max_samples, budget.wave_size, budget.strategy,
                   budget.stop_threshold, budget.stop_margin,
                   budget.stop_on_first_wave_agreement, rule, k, *row_numbers[1:6],
                   score if row_numbers[6] else None)  # fmt: skip
            hit = self.answers.get(key)
            if hit is None:
                state = prefix_tally(keys, int(rows[at]), k)
                if kind == "stop":
                    hit = int(should_stop(state, rule, budget, best_score=score).stop)
                else:
                    hit = plan_next_wave(budget, int(launched[at]), state, rule)
                self.answers[key] = hit
                self.calls += 1
            out[i] = hit
        return out[inverse.reshape(-1)]


def sample_caps(budgets: Sequence[Budget], budget_of_row: IntArray,
                width: int) -> tuple[FloatArray, BoolArray]:  # fmt: skip
    """``[rows, width]`` token caps and whether forcing applies there: sample ``j`` of a
    row under its budget's ``Budget.sample_max_tokens(j)`` and ``Budget.forces(j)``
    (samples finish in launch order in a replay)."""
    caps = np.array([[b.sample_max_tokens(j) for j in range(width)] for b in budgets],
                    dtype=np.float64)  # fmt: skip
    forces = np.array([[b.forces(j) for j in range(width)] for b in budgets], dtype=np.bool_)
    return caps[budget_of_row], forces[budget_of_row]


def _truncate(
    rs: ReplaySet, caps: FloatArray, forces: BoolArray, forcing: ForcingConfig | None
) -> tuple[IntArray, FloatArray, PrefixState]:
    """Keys, tokens and state with each sample cut at its token cap (``caps``, ``[rows,
    width]``; answering there when ``forcing`` is on, its budget ``forces`` it, ``[rows,
    width]``, and the sample has a trajectory)."""
    if not rs.has_tokens:
        return rs.keys, rs.tokens, rs.state
    cut = rs.tokens > caps
    if not cut.any():
        return rs.keys, rs.tokens, rs.state
    keys = np.where(cut & (rs.keys >= 0), ABSTAIN, rs.keys)
    tokens = np.minimum(rs.tokens, caps)
    if forcing is not None and forcing.enabled and rs.trajectory is not None:
        forced = cut & rs.trajectory.present & forces
        keys = np.where(forced, rs.trajectory.at_cap(caps), keys)
        tokens = np.where(forced, caps + forcing.answer_tokens, tokens)
    return keys, tokens, compute_prefix_state(keys, rs.scores)


def replay_adaptive(
    rs: ReplaySet,
    budgets: Sequence[Budget],
    budget_of_problem: IntArray,
    rule: StopRule,
    *,
    name: str,
    family: str,
    waves: bool = True,
    cache: DecisionCache | None = None,
    params: dict[str, object] | None = None,
    forcing: ForcingConfig | None = None,
) -> Outcome:
    """Replay with ``budgets[budget_of_problem[p]]`` per problem (see the module docstring).

    ``waves=False`` runs one sample at a time (the sequential baselines of the papers).
    Budgets must not exceed a problem's samples (``assign_budget``'s sample cap does that).
    """
    cache = cache or DecisionCache()
    rows_problem = rs.row_problem()
    b_row = np.repeat(np.asarray(budget_of_problem, dtype=np.int64), rs.orderings)
    if (np.array([b.max_samples for b in budgets])[b_row] > rs.counts[rows_problem]).any():
        raise ReplayError("a budget asks for more samples than a problem has")
    caps, forces = sample_caps(budgets, b_row, rs.width)
    keys, tokens, state = _truncate(rs, caps, forces, forcing)
    window = max(rule.window, 2)
    uses_streak = rule.kind is StopRuleKind.WINDOW or any(
        b.strategy is Strategy.REVISE for b in budgets)  # fmt: skip
    streak = np.minimum(state.streak, window) if uses_streak else np.zeros_like(state.streak)
    strategy = np.array([b.strategy.value for b in budgets])[b_row]
    by_score = strategy == Strategy.BEST_OF_N.value
    verified = rule.score_threshold is not None and state.best_score is not None \
        and bool(by_score.any())  # fmt: skip
    score_rank = np.zeros_like(state.streak)
    if verified and state.best_score is not None:  # ranks of the best score, where read
        distinct = np.unique(state.best_score[np.isfinite(state.best_score)])
        ranked = np.searchsorted(distinct, state.best_score) + 1
        ranked[~np.isfinite(state.best_score)] = 0
        score_rank = np.where(by_score[:, None], ranked, 0)

    # Without scores no verifier scores as samples finish: RequestPlan drops the rule's
    # score threshold, and best-of-n launches the rest at once.
    wave_rule = rule if state.best_score is not None \
        else rule.model_copy(update={"score_threshold": None})  # fmt: skip
    if waves:
        first_wave = [plan_next_wave(b, 0, tally(()), wave_rule) for b in budgets]
        launched = np.array(first_wave, dtype=np.int64)[b_row]
    else:
        launched = np.ones(rs.rows, dtype=np.int64)
    rounds = (launched > 0).astype(np.int64)
    stop_k = np.zeros(rs.rows, dtype=np.int64)
    active = np.arange(rs.rows)
    for k in range(1, rs.width + 1):
        c = k - 1
        numbers = np.stack([b_row[active], np.zeros_like(active), state.votes[active, c],
                            state.leader_votes[active, c], state.runner_up_votes[active, c],
                            streak[active, c], score_rank[active, c]], axis=1)  # fmt: skip
        scores_now = state.best_score[active, c] if verified and state.best_score is not None \
            else None  # fmt: skip
        stop = cache.lookup("stop", budgets, rule, keys, active, k, launched[active],
                            numbers, scores_now).astype(bool)  # fmt: skip
        stop_k[active[stop]] = k
        active = active[~stop]
        if active.size == 0:
            break
        if waves:
            numbers = numbers[~stop]
            numbers[:, 1] = launched[active]
            numbers[:, 6] = 0  # plan_next_wave reads no score
            more = cache.lookup("wave", budgets, wave_rule, keys, active, k,
                                launched[active], numbers)  # fmt: skip
            launched[active] += more
            rounds[active] += more > 0
        else:
            launched[active] += 1
            rounds[active] += 1
        if (launched[active] <= k).any():
            raise ReplayError("the wave plan left a request with no sample running")
    if active.size:
        raise ReplayError("a request ran out of samples before its stopping rule fired")

    rows = np.arange(rs.rows)
    cum = np.cumsum(tokens, axis=1)
    done_tokens = cum[rows, stop_k - 1]
    stopper = tokens[rows, stop_k - 1]
    pos = np.arange(rs.width)[None, :]
    cancelled = (pos >= stop_k[:, None]) & (pos < launched[:, None])
    cancel_tokens = (np.minimum(tokens, stopper[:, None]) * cancelled).sum(axis=1)
    spent = done_tokens + cancel_tokens
    answer = state.leader[rows, stop_k - 1]
    scored: FloatArray | None = None
    if state.best_scored is not None:  # without scores the router falls back to a vote
        answer = np.where(by_score, state.best_scored[rows, stop_k - 1], answer)
        answered = np.cumsum(keys >= 0, axis=1)[rows, stop_k - 1]
        scored = np.where(by_score, answered, 0).astype(np.float64)
    last = strategy == Strategy.REVISE.value  # a revision chain answers with its last sample
    answer = np.where(last, keys[rows, stop_k - 1], answer)
    correct = (answer >= 0) & (answer == rs.correct[rows_problem])
    return Outcome(
        name=name, family=family, correct=correct, samples=launched.astype(np.float64),
        completed=stop_k.astype(np.float64), tokens=spent,
        cost=spent * rs.price[rows_problem], params=dict(params or {}), verifier_calls=scored,
        waves=rounds.astype(np.float64),
    )  # fmt: skip


# -- audit --------------------------------------------------------------------------------


def audit(rs: ReplaySet, checks: int = 200, seed: int = 0) -> int:
    """Compare the array state with the router's ``tally``, ``majority_vote`` and
    ``best_of_n`` on ``checks`` random prefixes; raise ``ReplayError`` on any mismatch.
    Returns the number of prefixes checked."""
    rng = np.random.default_rng(seed)
    rows_problem = rs.row_problem()
    for _ in range(checks):
        row = int(rng.integers(rs.rows))
        k = int(rng.integers(1, int(rs.counts[rows_problem[row]]) + 1))
        answers = [None if v < 0 else str(v) for v in rs.keys[row, :k].tolist()]
        real = tally(answers, "exact")
        leader = int(rs.state.leader[row, k - 1])
        got = (None if leader < 0 else str(leader), int(rs.state.leader_votes[row, k - 1]),
               int(rs.state.runner_up_votes[row, k - 1]),
               int(rs.state.votes[row, k - 1]))  # fmt: skip
        want = (real.leader, real.leader_votes, real.runner_up_votes, real.votes)
        if got != want or majority_vote(answers, "exact") != want[0]:
            raise ReplayError(f"prefix state {got} != router tally {want} (row {row}, k {k})")
        if rs.scores is not None and rs.state.best_scored is not None:
            best = int(rs.state.best_scored[row, k - 1])
            expected = best_of_n(answers, rs.scores[row, :k].tolist())
            if (None if best < 0 else str(best)) != expected:
                raise ReplayError(f"best-of-n {best} != router best_of_n {expected}")
    return checks
