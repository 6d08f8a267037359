"""Difficulty signals: cross-fitted AUROC for "the first sample is wrong"."""

from __future__ import annotations

import json
import random
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ponder_tools.cli import main
from ponder_tools.evaluation.dataset import Dataset, EvalProblem, parse_lines
from ponder_tools.evaluation.signals import (
    COMBINED,
    IN_FLIGHT_ONLY,
    LEARNED_PRIOR,
    POLICY_WAVE,
    PRIOR_FIT_MODULE,
    REFERENCE_PRIOR,
    PromptScorer,
    SignalConfig,
    auroc,
    difficulty_signals,
    fixed_prior,
    format_signals,
    problem_interval,
)


def split_dataset(problems: int = 120, seed: int = 3) -> Dataset:
    """Half the problems easy (every sample right, agreeing, confident, short), half hard
    (every sample wrong, each a different answer, unconfident, long); the question says
    which in one word, among filler words drawn at random."""
    rng = random.Random(seed)
    rows = []
    for i in range(problems):
        hard = i % 2 == 1
        filler = " ".join(rng.choice(["apples", "trains", "coins", "boxes", "ducks"])
                          for _ in range(6))  # fmt: skip
        answers = [str(100 + j) for j in range(6)] if hard else ["7"] * 6
        rows.append({
            "id": f"p{i}", "question": f"{'tricky' if hard else 'plain'} {filler} {i}?",
            "reference": "7", "samples": [f"\\boxed{{{a}}}" for a in answers],
            "tokens": [rng.randint(800, 900) if hard else rng.randint(100, 200)
                       for _ in answers],
            "confidences": [0.3 if hard else 0.9 for _ in answers],
        })  # fmt: skip
    return parse_lines([json.dumps(r) for r in rows], name="split")


def test_auroc_is_one_for_a_perfect_signal_and_none_for_one_class() -> None:
    target = np.array([True, False, True, False])
    assert auroc(target, np.array([0.9, 0.1, 0.8, 0.2])) == 1.0
    assert auroc(target, np.array([0.1, 0.9, 0.2, 0.8])) == 0.0
    assert auroc(np.array([True, True]), np.array([0.1, 0.2])) is None
    assert auroc(target, np.array([0.1, np.nan, 0.2, 0.3])) is None


def test_signals_that_separate_easy_from_hard_reach_one_and_a_random_prior_one_half() -> None:
    rng = np.random.default_rng(0)
    noise: dict[str, float] = {}

    def random_prior(prompt: str) -> float:
        return noise.setdefault(prompt, float(rng.random()))

    report = difficulty_signals(split_dataset(400), SignalConfig(orderings=4, folds=5),
                                priors={"random": fixed_prior(random_prior)})  # fmt: skip
    for signal in ("disagreement", "unconfidence", "length", COMBINED, IN_FLIGHT_ONLY):
        assert report.auroc[signal][POLICY_WAVE] == pytest.approx(1.0)
    assert report.auroc["random"][POLICY_WAVE] == pytest.approx(0.5, abs=0.08)
    assert report.auroc[REFERENCE_PRIOR][POLICY_WAVE] > 0.95  # learns the word 'tricky'
    assert report.first_wrong_share == pytest.approx(0.5)
    assert set(report.waves) == {POLICY_WAVE, "k=2", "k=3", "k=4"}
    assert "disagreement" in format_signals(report)
    assert report.as_dict()["combined_inputs"][:2] == ["prior (router features)",
                                                       "text prior (traffic)"]


def test_a_prior_that_memorises_its_training_problems_learns_nothing_out_of_fold() -> None:
    def memorise(problems: Sequence[EvalProblem]) -> PromptScorer:
        seen = {p.question: 1.0 - p.pass_at_1 for p in problems}
        return lambda prompt: seen.get(prompt, 0.5)

    report = difficulty_signals(split_dataset(), SignalConfig(orderings=3),
                                priors={"memorised": memorise})  # fmt: skip
    assert report.auroc["memorised"][POLICY_WAVE] == pytest.approx(0.5)


def test_signals_the_data_lack_are_left_out() -> None:
    rows = [{"id": f"q{i}", "question": f"What is {i}?", "reference": "1",
             "samples": ["\\boxed{1}", "\\boxed{2}", "\\boxed{1}"][: 2 + i % 2]}
            for i in range(30)]  # fmt: skip
    report = difficulty_signals(parse_lines([json.dumps(r) for r in rows]),
                                SignalConfig(orderings=2, folds=3))  # fmt: skip
    assert report.auroc["unconfidence"][POLICY_WAVE] is None
    assert report.auroc["length"][POLICY_WAVE] is None
    assert report.combined_inputs == ("prior (router features)", "text prior (traffic)",
                                      "disagreement")  # fmt: skip


def test_ponder_evaluate_reports_waves_and_signal_aurocs(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:  # fmt: skip
    data = tmp_path / "split.jsonl"
    dataset = split_dataset(40)
    data.write_text("\n".join(json.dumps({
        "id": p.problem_id, "question": p.question, "reference": p.reference,
        "answers": list(p.answer_keys), "tokens": list(p.tokens or ()),
        "confidences": list(p.confidences or ())}) for p in dataset.problems) + "\n")
    code = main(["evaluate", "--data", str(data), "--orderings", "3", "--signal-orderings",
                 "2", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "waves" in printed
    assert "AUROC for 'the first sample is wrong'" in printed
    document = json.loads((tmp_path / "out" / "evaluate_split.json").read_text())
    assert all(r["mean_waves"] >= 1.0 for r in document["results"])
    assert document["difficulty_signals"]["auroc"]["disagreement"][POLICY_WAVE] == 1.0


def test_the_routers_learned_prior_is_scored_where_the_checkout_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trained_on: list[int] = []

    class Prior:
        def __init__(self, hard: set[str]) -> None:
            self.hard = hard

        def predict(self, prompt: str) -> float:
            return 1.0 if prompt.startswith("tricky") else 0.0

    def replay_requests(dataset: Dataset, *, seed: int = 0) -> list[str]:
        return [p.question for p in dataset.problems]

    def fit_prior(requests: list[str], *, seed: int = 0) -> Prior:
        trained_on.append(len(requests))
        return Prior(set(requests))

    module = types.ModuleType(PRIOR_FIT_MODULE)
    module.replay_requests = replay_requests  # type: ignore[attr-defined]
    module.fit_prior = fit_prior  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PRIOR_FIT_MODULE, module)
    report = difficulty_signals(split_dataset(50), SignalConfig(orderings=2))
    assert report.auroc[LEARNED_PRIOR][POLICY_WAVE] == 1.0
    assert trained_on == [40] * 5  # each fold's prior learned from the other four folds
    monkeypatch.setitem(sys.modules, PRIOR_FIT_MODULE, None)  # not in this checkout
    assert LEARNED_PRIOR not in difficulty_signals(split_dataset(50),
                                                   SignalConfig(orderings=2)).auroc


def test_the_combined_interval_resamples_problems_and_holds_the_estimate() -> None:
    target = np.repeat(np.arange(60) % 2 == 1, 4)  # 60 problems x 4 orders
    signal = np.repeat(np.random.default_rng(1).random(60), 4) + target * 0.3
    interval = problem_interval(target, signal, orderings=4)
    assert interval is not None
    low, high = interval
    assert low < (auroc(target, signal) or 0.0) < high
    assert high - low > 0.05  # 60 problems, not 240 independent rows
    report = difficulty_signals(split_dataset(), SignalConfig(orderings=2))
    assert report.combined_interval == pytest.approx((1.0, 1.0))
