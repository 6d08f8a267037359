"""Difficulty signals, and how well each ranks "the first sample is wrong" (cross-fitted AUROC).

Role: the difficulty half of ``ponder evaluate``'s report; ``suite`` replays policies,
this module asks how much each signal a router could act on knows about a request's
difficulty. A *row* is one problem in one seeded random order of its samples (the order
they finish); the target is that the row's first sample is wrong (an abstention is
wrong). The signals, each oriented so that higher means harder:

- ``prior (router features)``: the router's ``FeatureEstimator`` with the default
  weights, on the question alone (nothing fitted here, so nothing to cross-fit);
- ``text prior (traffic)``: hashed word and character n-grams into a logistic model
  (scikit-learn, ``TextPrior``), fitted on the other folds' questions with the label a service sees
  without references: how contested the problem's vote over all its samples is
  (1 - the leader's share);
- ``text prior (references)``: the same model fitted on each problem's error rate
  (1 - pass@1), which needs references: a ceiling for what a text prior learns;
- ``learned prior (router)``: the router's own prompt prior, trained online on the
  other folds' replayed requests' free labels (``router_prior_fit``), where the checkout
  has ``prior_fit``;
- any prompt prior given through ``priors`` (a ``PriorFit``: training problems in, a
  prompt -> score callable out), fitted on the other folds;
- in flight, from the *first wave* (the first k samples of the row): ``disagreement``
  (1 - the share agreeing with the wave's leader, the router's tally), ``unconfidence``
  (1 - the mean confidence, where the data carry confidences), ``length`` (the mean
  tokens, where the data carry tokens), ``low score`` (minus the mean verifier score,
  where the data carry scores);
- ``combined``: a logistic model over the router's fixed prior, the traffic text prior,
  the hook priors and the first-wave signals, cross-fitted (the router's learned prior
  is reported alone: replaying every request for each nested fit costs too much);
  ``in flight only`` the same over the first-wave signals alone.

k is the default policy's first wave for the problem's tier (2, 3 or 4 by the router's
prior), or a fixed 2, 3 or 4 (a problem with fewer samples uses all of them).

Cross-fitting: problems are dealt into ``folds`` folds (``sklearn.model_selection.KFold``,
shuffled under the seed), and every score a fitted model gives a row comes from a model
that never saw the row's problem: all of its orders stay in one fold. The combined model's
text-prior feature is itself out of fold on the training part (nested), so no label of a
test problem reaches its score. AUROC is ``sklearn.metrics.roc_auc_score`` over all rows;
orders of one problem are correlated, so its effective sample is nearer the problem count.

Leakage, said plainly: the first wave includes the first sample, so the in-flight signals
see the very sample whose correctness is the target. That is what an in-flight estimate
has when the wave finishes, and honest for it; it is not a prediction before any sample.
``next_sample`` reports the same AUROCs for a target outside the wave: the sample right
after the policy's first wave is wrong (rows whose problem has one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse import vstack
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, PredefinedSplit, cross_val_predict
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import StandardScaler

from ponder_router.budgets import default_policy

from .dataset import Dataset, EvalProblem
from .replay import ABSTAIN, PAD, compute_prefix_state
from .suite import ponder_budgets

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

PromptScorer = Callable[[str], float]
"""A prompt prior: higher means harder."""
PriorFit = Callable[[Sequence[EvalProblem]], PromptScorer]
"""Fits a prompt prior on training problems and returns its scorer. The problems carry
their references; a prior that learns from traffic must read only questions and samples."""

FIXED_WAVES = (2, 3, 4)
POLICY_WAVE = "policy"
ROUTER_PRIOR = "prior (router features)"
TRAFFIC_PRIOR = "text prior (traffic)"
REFERENCE_PRIOR = "text prior (references)"
IN_FLIGHT = ("disagreement", "unconfidence", "length", "low score")
COMBINED = "combined"
IN_FLIGHT_ONLY = "in flight only"


@dataclass(frozen=True)
class SignalConfig:
    orderings: int = 20
    seed: int = 0
    folds: int = 5
    fixed_waves: tuple[int, ...] = FIXED_WAVES
    router_prior: bool = True  # the router's learned prior, where the checkout has it


@dataclass(frozen=True)
class SignalReport:
    """AUROC by signal and first wave (``POLICY_WAVE`` or ``"k=2"`` ...); None where a
    signal is missing from the data or the target has one class only."""

    dataset: str
    problems: int
    rows: int
    first_wrong_share: float
    waves: tuple[str, ...]
    auroc: dict[str, dict[str, float | None]]
    next_sample: dict[str, float | None]  # target: the sample after the policy's wave
    next_sample_rows: int
    combined_inputs: tuple[str, ...]
    combined_interval: tuple[float, float] | None = None  # 95 %, problems resampled
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "problems": self.problems, "rows": self.rows,
            "target": "the first sample of a random order is wrong",
            "first_wrong_share": round(self.first_wrong_share, 5),
            "first_waves": list(self.waves),
            "auroc": {s: {w: _r(v) for w, v in row.items()} for s, row in self.auroc.items()},
            "next_sample_target": "the sample after the policy's first wave is wrong",
            "next_sample_rows": self.next_sample_rows,
            "auroc_next_sample": {s: _r(v) for s, v in self.next_sample.items()},
            "combined_inputs": list(self.combined_inputs),
            "combined_auroc_95_interval": None if self.combined_interval is None
            else [round(v, 4) for v in self.combined_interval],
            "settings": self.settings,
        }  # fmt: skip


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def auroc(target: BoolArray, signal: FloatArray) -> float | None:
    """``roc_auc_score`` of ``signal`` for ``target``; None when the target has one class
    or the signal is missing (NaN)."""
    if np.isnan(signal).any() or target.all() or not target.any():
        return None
    return float(roc_auc_score(target, signal))


# -- text priors --------------------------------------------------------------------------


class TextPrior:
    """Hashed word 1-2-grams and character 3-5-grams of the question into a logistic
    model (scikit-learn's ``SGDClassifier`` with logistic loss: the same model as
    ``LogisticRegression``, fitted in a fraction of its time on 2^17 hashed features)
    of a per-problem share in [0, 1], fitted as a soft label. Hashing is stateless, so
    each question is vectorised once and kept (``vectors``)."""

    def __init__(self, label: Callable[[EvalProblem], float], seed: int = 0) -> None:
        self.label = label
        self.seed = seed
        self.vectorizer = make_union(
            HashingVectorizer(ngram_range=(1, 2), n_features=1 << 16, alternate_sign=False),
            HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=1 << 16,
                              alternate_sign=False))  # fmt: skip
        self._cache: dict[str, Any] = {}

    def vectors(self, questions: Sequence[str]) -> Any:
        new = [q for q in dict.fromkeys(questions) if q not in self._cache]
        if new:
            for q, row in zip(new, self.vectorizer.transform(new), strict=True):
                self._cache[q] = row
        return vstack([self._cache[q] for q in questions]).tocsr()

    def __call__(self, problems: Sequence[EvalProblem]) -> PromptScorer:
        """Fit on ``problems``: a ``PriorFit``."""
        x = self.vectors([p.question for p in problems])
        share = np.array([self.label(p) for p in problems], dtype=np.float64)
        model = SGDClassifier(loss="log_loss", alpha=1e-4, max_iter=1000, tol=1e-3,
                              random_state=self.seed)  # fmt: skip
        if share.min() == share.max():  # one class: nothing to learn
            return _Scorer(self, None, float(share[0]))
        model.fit(vstack([x, x]), np.r_[np.ones(len(share)), np.zeros(len(share))],
                  sample_weight=np.r_[share, 1.0 - share])  # fmt: skip
        return _Scorer(self, model, 0.0)


class _Scorer:
    """A fitted ``TextPrior``: one prompt (``__call__``) or many (``many``)."""

    def __init__(self, prior: TextPrior, model: Any, constant: float) -> None:
        self.prior, self.model, self.constant = prior, model, constant

    def __call__(self, prompt: str) -> float:
        return float(self.many([prompt])[0])

    def many(self, prompts: Sequence[str]) -> FloatArray:
        if self.model is None:
            return np.full(len(prompts), self.constant)
        scores: FloatArray = self.model.predict_proba(self.prior.vectors(prompts))[:, 1]
        return scores


def fixed_prior(scorer: PromptScorer) -> PriorFit:
    """A ``PriorFit`` for a prior fitted elsewhere: it ignores the training problems. Only
    honest when ``scorer`` never learned from the problems it is evaluated on."""

    def fit(_problems: Sequence[EvalProblem]) -> PromptScorer:
        return scorer

    return fit


LEARNED_PRIOR = "learned prior (router)"
PRIOR_FIT_MODULE = "ponder_tools.evaluation.prior_fit"


def router_prior_fit(seed: int = 0) -> PriorFit | None:
    """The router's own prompt prior learned from traffic (``prior_fit``: each training
    problem replayed as one request, the prior trained online on the free labels the
    finished requests give, no references), as a ``PriorFit``; None where this checkout
    has no such module."""
    try:
        module = importlib.import_module(PRIOR_FIT_MODULE)
    except ImportError:
        return None
    replay, train = getattr(module, "replay_requests", None), getattr(module, "fit_prior", None)
    if replay is None or train is None:
        return None

    def fit(problems: Sequence[EvalProblem]) -> PromptScorer:
        prior = train(replay(Dataset("train", tuple(problems)), seed=seed), seed=seed)
        predict: PromptScorer = prior.predict
        return predict

    return fit


def load_prior(spec: str) -> PriorFit:
    """The ``PriorFit`` named ``module:attribute`` (``ponder evaluate --prior``)."""
    module, sep, attribute = spec.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"prior {spec!r}: expected module:attribute")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"prior {spec!r}: {exc}") from exc
    if not callable(found):
        raise ValueError(f"prior {spec!r} is not callable")
    fit: PriorFit = found
    return fit


def contested_share(problem: EvalProblem) -> float:
    """1 - the leader's share of all samples: how contested the vote is, no reference."""
    counts: dict[str, int] = {}
    for key in problem.answer_keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return 1.0 - max(counts.values(), default=0) / problem.sample_count


def error_rate(problem: EvalProblem) -> float:
    return 1.0 - problem.pass_at_1


def out_of_fold(fit: PriorFit, problems: Sequence[EvalProblem], fold: IntArray) -> FloatArray:
    """Each problem's prior score from a prior fitted on the problems of the other folds."""
    out = np.empty(len(problems))
    for f in np.unique(fold).tolist():
        train = [p for p, g in zip(problems, fold.tolist(), strict=True) if g != f]
        test = np.flatnonzero(fold == f)
        out[test] = _score(fit(train), [problems[i].question for i in test.tolist()])
    return out


def _score(scorer: PromptScorer, prompts: Sequence[str]) -> FloatArray:
    many = getattr(scorer, "many", None)  # a batch path where the scorer has one
    if many is not None:
        return np.asarray(many(prompts), dtype=np.float64)
    return np.array([scorer(p) for p in prompts], dtype=np.float64)


# -- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    problem: IntArray  # [rows]
    keys: IntArray  # [rows, width] answer ids in finishing order; ABSTAIN, PAD
    right: BoolArray  # [rows, width]
    counts: IntArray  # [rows] samples of the row's problem
    tokens: FloatArray | None
    confidences: FloatArray | None
    scores: FloatArray | None


def _rows(problems: Sequence[EvalProblem], orderings: int, seed: int) -> _Rows:
    counts = np.array([p.sample_count for p in problems], dtype=np.int64)
    width = int(counts.max())
    base = np.full((len(problems), width), PAD, dtype=np.int64)
    right = np.zeros((len(problems), width), dtype=bool)
    extra = {name: np.full((len(problems), width), np.nan)
             for name in ("tokens", "confidences", "scores")}  # fmt: skip
    for i, p in enumerate(problems):
        ids: dict[str, int] = {}
        base[i, : p.sample_count] = [ABSTAIN if k is None else ids.setdefault(k, len(ids))
                                     for k in p.answer_keys]  # fmt: skip
        right[i, : p.sample_count] = [k == p.reference_key for k in p.answer_keys]
        for name, values in (("tokens", p.tokens), ("confidences", p.confidences),
                             ("scores", p.scores)):  # fmt: skip
            if values is not None:
                extra[name][i, : p.sample_count] = values
    rng = np.random.default_rng(seed)
    row_counts = np.repeat(counts, orderings)
    draw = rng.random((len(problems) * orderings, width))
    draw[np.arange(width)[None, :] >= row_counts[:, None]] = np.inf  # padding stays last
    order = np.argsort(draw, axis=1, kind="stable")
    source = np.repeat(np.arange(len(problems)), orderings)[:, None]

    def present(name: str) -> FloatArray | None:
        rows: FloatArray = extra[name][source, order]
        inside = np.arange(width)[None, :] < row_counts[:, None]
        return None if np.isnan(rows[inside]).any() else rows

    return _Rows(problem=source[:, 0], keys=base[source, order], right=right[source, order],
                 counts=row_counts, tokens=present("tokens"),
                 confidences=present("confidences"), scores=present("scores"))  # fmt: skip


def _first_wave(rows: _Rows, wave: IntArray) -> dict[str, FloatArray]:
    """The in-flight signals after each row's first ``wave`` samples (NaN: no data)."""
    k = np.minimum(wave, rows.counts)
    at = (np.arange(len(k)), k - 1)
    state = compute_prefix_state(np.where(rows.keys == PAD, ABSTAIN, rows.keys))
    inside = np.arange(rows.keys.shape[1])[None, :] < k[:, None]

    def mean(values: FloatArray | None) -> FloatArray:
        if values is None:
            return np.full(len(k), np.nan)
        means: FloatArray = np.where(inside, values, 0.0).sum(axis=1) / k
        return means

    return {
        "disagreement": 1.0 - state.leader_votes[at] / k,
        "unconfidence": 1.0 - mean(rows.confidences),
        "length": np.log1p(mean(rows.tokens)),
        "low score": -mean(rows.scores),
    }


# -- the report ---------------------------------------------------------------------------


def _logistic() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(solver="newton-cholesky"))


def _available(signals: Mapping[str, FloatArray]) -> list[str]:
    return [name for name, values in signals.items() if not np.isnan(values).any()]


def difficulty_signals(
    dataset: Dataset,
    config: SignalConfig | None = None,
    *,
    priors: Mapping[str, PriorFit] | None = None,
) -> SignalReport:
    """Every signal's cross-fitted AUROC for "the first sample is wrong" (module docstring)."""
    config = config or SignalConfig()
    problems = dataset.problems
    if len(problems) < config.folds:
        raise ValueError(f"{len(problems)} problems: too few for {config.folds} folds")
    rows = _rows(problems, config.orderings, config.seed)
    first_wrong = ~rows.right[:, 0]
    kfold = KFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    fold = np.empty(len(problems), dtype=np.int64)
    for f, (_, test) in enumerate(kfold.split(np.arange(len(problems)))):
        fold[test] = f
    row_fold = fold[rows.problem]

    estimator = default_policy().feature_estimator()
    router = np.array([estimator.estimate(p.question).score for p in problems])
    fits: dict[str, PriorFit] = {TRAFFIC_PRIOR: TextPrior(contested_share, config.seed),
                                 REFERENCE_PRIOR: TextPrior(error_rate, config.seed),
                                 **(priors or {})}  # fmt: skip
    learned_prior = router_prior_fit(config.seed) if config.router_prior else None
    if learned_prior is not None:
        fits[LEARNED_PRIOR] = learned_prior
    prompt = {ROUTER_PRIOR: router[rows.problem]}
    for name, fit in fits.items():
        prompt[name] = out_of_fold(fit, problems, fold)[rows.problem]
    # The combined model's fitted priors, out of fold on each training part too (nested).
    learned = [TRAFFIC_PRIOR, *(priors or {})]  # the router's prior: alone (six times cheaper)
    nested = {f: {name: _nested(fits[name], problems, fold, f, config) for name in learned}
              for f in range(config.folds)}  # fmt: skip

    budgets, index = ponder_budgets(problems, default_policy())
    policy_wave = np.array([budgets[i].wave_size for i in index.tolist()])[rows.problem]
    waves = {POLICY_WAVE: policy_wave,
             **{f"k={k}": np.full(len(first_wrong), k) for k in config.fixed_waves}}
    table: dict[str, dict[str, float | None]] = {}
    inputs: tuple[str, ...] = ()
    next_sample: dict[str, float | None] = {}
    interval: tuple[float, float] | None = None
    has_next = policy_wave < rows.counts
    next_wrong = ~rows.right[np.arange(len(policy_wave)), np.minimum(policy_wave,
                                                                     rows.counts - 1)]
    for label, wave in waves.items():
        flight = _first_wave(rows, wave)
        combined, inputs = _combined(prompt, flight, first_wrong, row_fold, nested, rows,
                                     learned)  # fmt: skip
        in_flight = _in_flight_only(flight, first_wrong, row_fold)
        signals = {**prompt, **flight, COMBINED: combined, IN_FLIGHT_ONLY: in_flight}
        for name, values in signals.items():
            table.setdefault(name, {})[label] = auroc(first_wrong, values)
        if label == POLICY_WAVE:
            next_sample = {name: auroc(next_wrong[has_next], values[has_next])
                           for name, values in signals.items()}  # fmt: skip
            interval = problem_interval(first_wrong, combined, config.orderings,
                                        seed=config.seed)  # fmt: skip
    return SignalReport(
        dataset=dataset.name, problems=len(problems), rows=len(first_wrong),
        first_wrong_share=float(first_wrong.mean()), waves=tuple(waves), auroc=table,
        next_sample=next_sample, next_sample_rows=int(has_next.sum()),
        combined_inputs=inputs, combined_interval=interval,
        settings={"orderings": config.orderings, "seed": config.seed,
                  "folds": config.folds, "hook_priors": sorted(priors or {}),
                  "router_prior": learned_prior is not None},
    )  # fmt: skip


def _nested(fit: PriorFit, problems: Sequence[EvalProblem], fold: IntArray, f: int,
            config: SignalConfig) -> FloatArray:  # fmt: skip
    """A prior's scores for the combined model of outer fold ``f``: out of fold within the
    training part, and from a prior fitted on the whole training part for fold ``f``."""
    out = np.empty(len(problems))
    train = np.flatnonzero(fold != f)
    inner = np.empty(len(train), dtype=np.int64)
    kfold = KFold(n_splits=config.folds, shuffle=True, random_state=config.seed + 1)
    for g, (_, test) in enumerate(kfold.split(train)):
        inner[test] = g
    out[train] = out_of_fold(fit, [problems[i] for i in train.tolist()], inner)
    test = np.flatnonzero(fold == f)
    scorer = fit([problems[i] for i in train.tolist()])
    out[test] = _score(scorer, [problems[i].question for i in test.tolist()])
    return out


def _combined(prompt: Mapping[str, FloatArray], flight: Mapping[str, FloatArray],
              target: BoolArray, row_fold: IntArray,
              nested: Mapping[int, Mapping[str, FloatArray]], rows: _Rows,
              learned: Sequence[str]) -> tuple[FloatArray, tuple[str, ...]]:  # fmt: skip
    """Out-of-fold probabilities of the combined logistic model, and its inputs."""
    fixed = [ROUTER_PRIOR, *_available(flight)]
    inputs = (ROUTER_PRIOR, *learned, *fixed[1:])
    out = np.empty(len(target))
    both = {**prompt, **flight}
    for f in np.unique(row_fold).tolist():
        columns = [nested[f][name][rows.problem] if name in learned else both[name]
                   for name in inputs]  # fmt: skip
        x = np.column_stack(columns)
        train, test = row_fold != f, row_fold == f
        model = _logistic().fit(x[train], target[train])
        out[test] = model.predict_proba(x[test])[:, 1]
    return out, inputs


def _in_flight_only(flight: Mapping[str, FloatArray], target: BoolArray,
                    row_fold: IntArray) -> FloatArray:  # fmt: skip
    """Out-of-fold probabilities of a logistic model over the first-wave signals alone."""
    x = np.column_stack([flight[name] for name in _available(flight)])
    predicted = cross_val_predict(_logistic(), x, target, cv=PredefinedSplit(row_fold),
                                  method="predict_proba")  # fmt: skip
    out: FloatArray = predicted[:, 1]
    return out


def problem_interval(target: BoolArray, signal: FloatArray, orderings: int, *,
                     resamples: int = 200, seed: int = 0) -> tuple[float, float] | None:
    """A 95 % percentile interval of the AUROC over ``resamples`` bootstrap draws of
    problems (all of a problem's ``orderings`` rows together: they are correlated)."""
    problems = len(target) // orderings
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        drawn = rng.integers(problems, size=problems)
        rows = (drawn[:, None] * orderings + np.arange(orderings)[None, :]).ravel()
        value = auroc(target[rows], signal[rows])
        if value is not None:
            values.append(value)
    if len(values) < resamples // 2:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def format_signals(report: SignalReport) -> str:
    """A fixed-width AUROC table: one line per signal, one column per first wave."""
    head = f"{'signal':<26}" + "".join(f"{w:>8}" for w in report.waves) + f"{'next':>8}"
    lines = [f"{report.dataset}: AUROC for 'the first sample is wrong' "
             f"({report.problems} problems x {report.settings['orderings']} orders, "
             f"{100 * report.first_wrong_share:.1f}% wrong; cross-fitted, "
             f"{report.settings['folds']} folds)", head, "-" * len(head)]  # fmt: skip
    for name, row in report.auroc.items():
        if all(v is None for v in row.values()):
            continue
        cells = "".join(f"{_cell(row[w]):>8}" for w in report.waves)
        lines.append(f"{name:<26}{cells}{_cell(report.next_sample.get(name)):>8}")
    lines.append(f"first wave: {POLICY_WAVE} = the default policy's for the problem's tier "
                 "(2-4), k=N = the first N samples; the wave includes the first sample "
                 "(in-flight signals see it); next: target 'the sample after the policy's "
                 f"wave is wrong' ({report.next_sample_rows} rows); combined: "
                 f"{', '.join(report.combined_inputs)}{_interval(report)}")
    return "\n".join(lines)


def _interval(report: SignalReport) -> str:
    if report.combined_interval is None:
        return ""
    low, high = report.combined_interval
    return f" (95 % interval at the policy's wave, problems resampled: {low:.3f}-{high:.3f})"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
