"""The router's prompt prior, learned offline from an evaluation data set.

Role: ``ponder calibrate``'s side of ``ponder_router.prior``. Each problem is replayed as
one request through the router's own ``RequestPlan`` (the default policy, the fixed
estimator picking the tier, as a cold router would; the samples in a seeded order), and
the finished plan yields the same free label the live router learns from
(``prior.observe_plan``, with the mean confidence of its finished samples when the data
carry confidences). ``fit_prior`` learns from those requests in a seeded "traffic" order,
one pass, online, as the router does; ``save_prior`` then writes the state file that
warm-starts a router. ``crossfit_prior`` measures what the prior is worth: trained online
on one fold's traffic, it scores the other fold's prompts, and the pooled scores' AUROC
for "the first sample is wrong" is reported beside the fixed estimator's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ponder_router.aggregate import StopRule
from ponder_router.budgets import BudgetPolicy, LoadState, assign_budget, default_policy
from ponder_router.difficulty import FeatureEstimator
from ponder_router.plan import RecordedSample, RequestPlan, replay_request
from ponder_router.prior import Observation, PriorConfig, observe_plan
from ponder_router.prior_model import LearnedPrior
from ponder_router.prior_store import save_prior

from .crossfit import fold_of
from .dataset import Dataset, EvalProblem
from .stats import auroc, spearman


@dataclass(frozen=True, slots=True)
class Request:
    """One problem replayed as a request: its prompt, what it teaches, how it began."""

    question: str
    observation: Observation | None
    first_wrong: bool
    fixed_score: float


def replay_requests(dataset: Dataset, *, seed: int = 0,
                    policy: BudgetPolicy | None = None) -> list[Request]:  # fmt: skip
    """Every problem of ``dataset`` as one request under ``policy`` (default: the router's
    default policy), its samples in a seeded order, capped at the samples the data hold."""
    policy = policy or default_policy()
    estimator = FeatureEstimator(policy.estimator) if policy.estimator else FeatureEstimator()
    rng = random.Random(seed)
    requests = []
    for problem in dataset.problems:
        order = list(range(problem.sample_count))
        rng.shuffle(order)
        estimate = estimator.estimate(problem.question)
        budget = assign_budget(estimate, "auto", LoadState.idle(), policy,
                               requested_max_samples=len(order))  # fmt: skip
        plan = RequestPlan.for_request(budget, StopRule(), can_score=False, equality="text")
        replay_request(plan, [_sample(problem, i) for i in order])
        requests.append(Request(
            question=problem.question,
            observation=observe_plan(plan, _confidence(problem, order[: len(plan.finished)])),
            first_wrong=problem.answer_keys[order[0]] != problem.reference_key,
            fixed_score=estimate.score,
        ))  # fmt: skip
    return requests


def _sample(problem: EvalProblem, index: int) -> RecordedSample:
    tokens = problem.tokens[index] if problem.tokens is not None else 0
    return RecordedSample(problem.answer_keys[index], tokens)


def _confidence(problem: EvalProblem, finished: Sequence[int]) -> float | None:
    if problem.confidences is None or not finished:
        return None
    return float(np.mean([problem.confidences[i] for i in finished]))


def fit_prior(requests: Sequence[Request], config: PriorConfig | None = None, *,
              seed: int = 0) -> LearnedPrior:  # fmt: skip
    """A prior that learned from ``requests`` arriving in a seeded order, one pass."""
    prior = LearnedPrior(config or PriorConfig())
    traffic = [r for r in requests if r.observation is not None]
    random.Random(f"traffic:{seed}").shuffle(traffic)
    for request in traffic:
        assert request.observation is not None
        prior.learn(request.question, request.observation)
    prior.flush()
    return prior


def crossfit_prior(dataset: Dataset, config: PriorConfig | None = None, *, folds: int = 2,
                   seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """AUROC for "the first sample is wrong" of the prior trained online on the other
    folds' free labels (pooled over folds), beside the fixed estimator's on the same
    requests and the free label's own (the request's finished samples: not prompt-only);
    and how well the prior predicts its own target, held out (Spearman with the label)."""
    requests = replay_requests(dataset, seed=seed)
    fold = fold_of(tuple(p.problem_id for p in dataset.problems), folds, seed)
    learned = np.zeros(len(requests))
    for f in range(folds):
        prior = fit_prior([r for r, g in zip(requests, fold, strict=True) if g != f], config,
                          seed=seed)  # fmt: skip
        for i in np.flatnonzero(fold == f):
            learned[i] = prior.predict(requests[i].question)
    wrong = np.array([r.first_wrong for r in requests])
    labels = np.array([r.observation.label if r.observation else 0.0 for r in requests])
    return {
        "problems": len(requests),
        "first_wrong_rate": round(float(wrong.mean()), 4) if len(wrong) else None,
        "folds": folds,
        "auroc_first_wrong": {
            "learned_prior": _round(auroc(learned, wrong)),
            "fixed_estimator": _round(auroc(np.array([r.fixed_score for r in requests]),
                                            wrong)),
            "free_label_in_flight": _round(auroc(labels, wrong)),
        },
        "mean_free_label": round(float(labels.mean()), 4) if len(labels) else None,
        "spearman_learned_vs_free_label": _round(spearman(learned, labels)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def warm_start_prior(dataset: Dataset, path: Path, config: PriorConfig | None = None, *,
                     seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Fit the prior on every problem of ``dataset``, write its state to ``path``, and
    return its cross-fitted quality and what was written (for the calibration report)."""
    prior = fit_prior(replay_requests(dataset, seed=seed), config, seed=seed)
    save_prior(prior, path)
    return {"state_file": str(path), "requests_learned": prior.seen, "warm": prior.warm,
            "crossfit": crossfit_prior(dataset, config, seed=seed)}
