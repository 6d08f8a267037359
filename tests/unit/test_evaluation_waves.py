"""Waves in the offline replay: the sequential rounds of launches, the latency cost.

``test_replay_equals_plan`` checks the fast replay's waves against ``RequestPlan`` request
by request; these check what each family's count means.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ponder_router.aggregate import StopRule
from ponder_router.budgets import Budget, Strategy
from ponder_tools.evaluation.replay import build_replay_set, compute_prefix_state, replay_adaptive
from ponder_tools.evaluation.report import suite_document
from ponder_tools.evaluation.suite import SuiteConfig, run_suite
from test_evaluation_replay import dataset_of, random_dataset


def test_fixed_policies_take_one_wave_and_sequential_baselines_one_per_sample() -> None:
    suite = run_suite(random_dataset(), config=SuiteConfig(orderings=4, seed=5))
    for result in suite.results:
        assert result.mean_waves is not None
        if result.family in ("majority", "best-of-n"):
            assert result.mean_waves == 1.0
        elif result.family in ("adaptive-consistency", "esc", "margin"):
            assert result.mean_waves == pytest.approx(result.mean_completed)
        else:  # Ponder launches in waves: at least one, never more than its samples
            assert 1.0 <= result.mean_waves < result.mean_samples
    assert all(r["mean_waves"] is not None for r in suite_document(suite)["results"])


@pytest.mark.parametrize(("answers", "waves"), [
    (["7", "7", "3", "3", "3", "3"], 1),  # the first wave of two agrees: done
    (["7", "3", "3", "3", "3", "3"], 2),  # it disagrees: one more wave, sized by the rule
])  # fmt: skip
def test_a_wave_plan_counts_its_rounds_of_launches(answers: list[str], waves: int) -> None:
    dataset = dataset_of([{"id": "w", "reference": "3",
                           "samples": [f"\\boxed{{{a}}}" for a in answers]}])  # fmt: skip
    budget = Budget(tier="t", strategy=Strategy.VOTE, max_tokens_per_sample=1 << 20,
                    max_samples=6, wave_size=2, expected_tokens=0.0,
                    stop_on_first_wave_agreement=True)  # fmt: skip
    keys = np.array([[0 if a == "7" else 1 for a in answers]])  # in this finishing order
    rs = build_replay_set(dataset, orderings=1, seed=0)
    rs = dataclasses.replace(rs, keys=keys, state=compute_prefix_state(keys))
    outcome = replay_adaptive(rs, [budget], np.array([0]), StopRule(threshold=0.95), name="p",
                              family="ponder")  # fmt: skip
    assert outcome.waves is not None
    assert outcome.waves.tolist() == [waves]
