"""Offline replay: reproducible, equal to the router's own functions step by step."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ponder_router.aggregate import (
    StopRule,
    StopRuleKind,
    best_of_n,
    majority_vote,
)
from ponder_router.budgets import Budget, BudgetPolicy, Strategy, Tier, default_policy
from ponder_router.plan import RecordedSample, RequestPlan, replay_request
from ponder_tools.evaluation.dataset import Dataset, parse_lines
from ponder_tools.evaluation.replay import (
    DecisionCache,
    PolicyResult,
    ReplaySet,
    audit,
    build_replay_set,
    replay_adaptive,
    replay_fixed,
    summarise,
)
from ponder_tools.evaluation.report import compare_along_curve
from ponder_tools.evaluation.suite import (
    NamedPolicy,
    SuiteConfig,
    SuiteResult,
    accuracy_at_samples,
    ponder_budgets,
    run_suite,
    samples_at_accuracy,
)

HAND_MADE = [
    # maj@3 is "1" (right); every order agrees, there are no ties.
    {"id": "a", "reference": "1", "samples": ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}"]},
    # maj@3 is "4" (wrong).
    {"id": "b", "reference": "3", "samples": ["\\boxed{3}", "\\boxed{4}", "\\boxed{4}"]},
    # maj@6 is "6" (right) with an abstention among the samples.
    {"id": "c", "reference": "6", "samples": ["\\boxed{5}", "no idea", "\\boxed{5}",
                                              "\\boxed{6}", "\\boxed{6}", "\\boxed{6}"]},
]  # fmt: skip


def dataset_of(rows: list[dict[str, object]]) -> Dataset:
    lines = [json.dumps({"question": f"Problem {r['id']}: what is x?", **r}) for r in rows]
    return parse_lines(lines, name="hand-made")


def random_dataset(problems: int = 40, seed: int = 7, with_scores: bool = True) -> Dataset:
    """Problems with 3 to 12 samples over a few answers, some abstaining, some long."""
    rng = random.Random(seed)
    rows = []
    for i in range(problems):
        count = rng.randint(3, 12)
        answers = [str(rng.choice([1, 1, 1, 2, 2, 3]) if rng.random() > 0.1 else "none")
                   for _ in range(count)]  # fmt: skip
        rows.append({
            "id": f"r{i}", "reference": "1",
            "samples": [f"\\boxed{{{a}}}" if a != "none" else "no answer" for a in answers],
            "tokens": [rng.randint(50, 400) for _ in range(count)],
            **({"scores": [round(rng.random(), 3) for _ in range(count)]} if with_scores else {}),
        })  # fmt: skip
    return dataset_of(rows)


def reference_replay(rs: ReplaySet, budgets: list[Budget], index: np.ndarray, rule: StopRule,
                     waves: bool) -> list[tuple[int, int, str | None]]:  # fmt: skip
    """The router's own ``RequestPlan``, one request at a time: (launched, finished, answer)."""
    out = []
    scored = rs.scores is not None
    for row in range(rs.rows):
        budget = budgets[int(index[row // rs.orderings])]
        keys = [None if v < 0 else str(v) for v in rs.keys[row].tolist()]
        scores = rs.scores[row].tolist() if rs.scores is not None else [None] * len(keys)
        samples = [RecordedSample(k, 0, s) for k, s in zip(keys, scores, strict=True)]
        plan = RequestPlan.for_request(budget, rule, can_score=scored, equality="exact")
        got = replay_request(plan, samples, verifier_model="prm" if scored else None,
                             waves=waves)  # fmt: skip
        out.append((got.launched, got.completed, got.answer))
    return out


def test_replay_is_reproducible_under_a_seed() -> None:
    dataset = random_dataset()
    first = run_suite(dataset, config=SuiteConfig(orderings=8, seed=3))
    again = run_suite(dataset, config=SuiteConfig(orderings=8, seed=3))
    other = run_suite(dataset, config=SuiteConfig(orderings=8, seed=4))
    assert [r.as_dict() for r in first.results] == [r.as_dict() for r in again.results]
    assert [r.as_dict() for r in first.results] != [r.as_dict() for r in other.results]


def test_maj_at_n_equals_a_direct_majority_vote_on_a_hand_made_dataset() -> None:
    dataset = dataset_of(HAND_MADE)  # type: ignore[arg-type]
    rs = build_replay_set(dataset, orderings=6, seed=1)
    assert summarise(replay_fixed(rs, rs.width), rs).accuracy == pytest.approx(2 / 3)
    for n in range(1, rs.width + 1):
        outcome = replay_fixed(rs, n)
        for row in range(rs.rows):
            problem = dataset.problems[row // rs.orderings]
            count = min(n, problem.sample_count)
            answers = [None if v < 0 else str(v) for v in rs.keys[row, :count].tolist()]
            direct = majority_vote(answers, "exact")
            right = rs.correct[row // rs.orderings]
            assert outcome.correct[row] == (direct is not None and direct == str(right))
            assert outcome.samples[row] == count


def test_every_sample_is_replayed_and_orders_are_permutations() -> None:
    dataset = random_dataset()
    rs = build_replay_set(dataset, orderings=5, seed=2)
    for row in range(rs.rows):
        problem = dataset.problems[row // rs.orderings]
        kept = rs.keys[row, : problem.sample_count].tolist()
        assert sorted(kept) == sorted(rs.keys[(row // rs.orderings) * rs.orderings,
                                              : problem.sample_count].tolist())  # fmt: skip
        assert (rs.keys[row, problem.sample_count :] == -2).all()


def test_prefix_state_matches_the_router_tally_on_every_prefix() -> None:
    rs = build_replay_set(random_dataset(), orderings=4, seed=5)
    assert audit(rs, checks=600, seed=1) == 600


TIERED = BudgetPolicy(tiers=(  # each tier with its own threshold, one best-of-n
    Tier(name="a", max_difficulty=0.2, max_tokens=100_000, max_samples=6, initial_samples=2,
         strategy=Strategy.VOTE, stop_threshold=0.7),
    Tier(name="b", max_difficulty=0.3, max_tokens=100_000, max_samples=12,
         initial_samples=1, strategy=Strategy.BEST_OF_N, verifier_model="prm"),
    Tier(name="c", max_difficulty=1.0, max_tokens=100_000, max_samples=12,
         initial_samples=3, strategy=Strategy.VOTE, stop_threshold=0.99, stop_margin=4),
))  # fmt: skip


@pytest.mark.parametrize("waves", [True, False])
@pytest.mark.parametrize(
    "rule",
    [StopRule(), StopRule(threshold=0.6), StopRule(kind=StopRuleKind.WINDOW, window=3),
     StopRule(kind=StopRuleKind.NEVER), StopRule(score_threshold=0.8),
     StopRule(kind=StopRuleKind.MARGIN, margin=2),
     StopRule(threshold=0.6, score_threshold=0.3)],
)
def test_the_cached_replay_equals_the_router_functions_step_by_step(
    rule: StopRule, waves: bool
) -> None:
    dataset = random_dataset()
    rs = build_replay_set(dataset, orderings=4, seed=9)
    spread = [(0.1, 0.25, 0.9)[i % 3] for i in range(len(dataset.problems))]  # every tier
    for policy, scores in ((default_policy(), None), (BudgetPolicy(tiers=(Tier(
            name="all", max_difficulty=1.0, max_tokens=100_000, max_samples=12,
            initial_samples=2, strategy=Strategy.VOTE),)), None), (TIERED, spread)):  # fmt: skip
        budgets, index = ponder_budgets(dataset.problems, policy, scores=scores)
        outcome = replay_adaptive(rs, budgets, index, rule, name="x", family="x", waves=waves)
        expected = reference_replay(rs, budgets, index, rule, waves)
        assert [(int(s), int(c)) for s, c in zip(outcome.samples, outcome.completed,
                                                 strict=True)] == [e[:2] for e in expected]
        right = [e[2] is not None and e[2] == str(rs.correct[i // rs.orderings])
                 for i, e in enumerate(expected)]  # fmt: skip
        assert outcome.correct.tolist() == right


def test_adaptive_stopping_never_uses_more_samples_than_maj_at_n_max() -> None:
    dataset = random_dataset(problems=60)
    suite = run_suite(dataset, config=SuiteConfig(orderings=6))
    rs = build_replay_set(dataset, orderings=6)
    most = rs.counts.repeat(6)
    top = suite.by_name(f"maj@{suite.max_samples}")
    adaptive = [r for r in suite.results
                if r.family in ("adaptive-consistency", "esc", "margin", "ponder")]
    assert {r.family for r in adaptive} == {"adaptive-consistency", "esc", "margin", "ponder"}
    for result in adaptive:
        assert result.mean_samples <= top.mean_samples
        assert (result.problem_samples <= rs.counts + 1e-9).all()
    for rule in (StopRule(), StopRule(kind=StopRuleKind.WINDOW),
                 StopRule(kind=StopRuleKind.MARGIN)):
        budgets, index = ponder_budgets(dataset.problems, default_policy())
        outcome = replay_adaptive(rs, budgets, index, rule, name="x", family="x")
        assert (outcome.samples <= most).all()
        assert (outcome.completed <= outcome.samples).all()


def test_best_of_n_picks_the_highest_scored_answer_like_the_router() -> None:
    dataset = random_dataset()
    rs = build_replay_set(dataset, orderings=3, seed=4)
    assert rs.scores is not None
    for n in (1, 3, 12):
        outcome = replay_fixed(rs, n, by_score=True)
        for row in range(rs.rows):
            count = min(n, dataset.problems[row // rs.orderings].sample_count)
            answers = [None if v < 0 else str(v) for v in rs.keys[row, :count].tolist()]
            chosen = best_of_n(answers, rs.scores[row, :count].tolist())
            right = str(rs.correct[row // rs.orderings])
            assert outcome.correct[row] == (chosen == right)


def test_a_verified_best_of_n_stops_at_the_first_sample_scored_above_the_threshold() -> None:
    rows = [{"id": "v", "reference": "1", "samples": ["\\boxed{1}", "\\boxed{2}", "none",
                                                     "\\boxed{2}"],
             "scores": [0.9, 0.2, 0.95, 0.4]}]  # fmt: skip
    dataset = dataset_of(rows)  # type: ignore[arg-type]
    rs = build_replay_set(dataset, orderings=30, seed=0)
    assert rs.scores is not None
    tier = Tier(name="t", max_difficulty=1.0, max_tokens=4096, max_samples=4,
                initial_samples=1, strategy=Strategy.BEST_OF_N, verifier_model="prm")
    budgets, index = ponder_budgets(dataset.problems, BudgetPolicy(tiers=(tier,)))
    outcome = replay_adaptive(rs, budgets, index, StopRule(score_threshold=0.5),
                              name="verified", family="ponder")  # fmt: skip
    assert outcome.correct.all()  # only the right answer scores 0.5 or more
    assert outcome.verifier_calls is not None
    for row in range(rs.rows):
        first = rs.keys[row].tolist().index(0)  # where the answer "1" finishes
        assert outcome.completed[row] == outcome.samples[row] == first + 1
        assert outcome.verifier_calls[row] == sum(k >= 0 for k in rs.keys[row, : first + 1])
    everything = replay_adaptive(rs, budgets, index, StopRule(), name="all", family="ponder")
    assert (everything.samples == 4).all()
    assert everything.verifier_calls is not None
    assert (everything.verifier_calls == 3).all()  # the abstaining sample is not scored
    assert summarise(everything, rs).mean_verifier_calls == 3.0


def test_one_decision_cache_serves_replays_of_different_problems() -> None:
    tier = Tier(name="t", max_difficulty=1.0, max_tokens=100_000, max_samples=8,
                initial_samples=1, strategy=Strategy.BEST_OF_N, verifier_model="prm")
    policy, rule = BudgetPolicy(tiers=(tier,)), StopRule(score_threshold=0.7)
    shared = DecisionCache()
    for seed in (1, 2, 3):  # each set ranks its scores differently
        dataset = random_dataset(problems=15, seed=seed)
        rs = build_replay_set(dataset, orderings=4, seed=seed)
        budgets, index = ponder_budgets(dataset.problems, policy)
        alone = replay_adaptive(rs, budgets, index, rule, name="x", family="x")
        cached = replay_adaptive(rs, budgets, index, rule, name="x", family="x", cache=shared)
        assert cached.samples.tolist() == alone.samples.tolist()
        assert cached.correct.tolist() == alone.correct.tolist()


def test_a_sample_longer_than_its_tier_allows_is_cut_off_and_abstains() -> None:
    rows = [{"id": "long", "reference": "7", "samples": ["\\boxed{7}"] * 3 + ["\\boxed{8}"] * 2,
             "tokens": [900, 900, 900, 100, 100]}]  # fmt: skip
    dataset = dataset_of(rows)  # type: ignore[arg-type]
    rs = build_replay_set(dataset, orderings=10, seed=0)
    tier = Tier(name="t", max_difficulty=1.0, max_tokens=500, max_samples=5,
                initial_samples=5, strategy=Strategy.VOTE)  # fmt: skip
    budgets, index = ponder_budgets(dataset.problems, BudgetPolicy(tiers=(tier,)))
    outcome = replay_adaptive(rs, budgets, index, StopRule(kind=StopRuleKind.NEVER),
                              name="capped", family="ponder")  # fmt: skip
    assert not outcome.correct.any()  # the right answers were all cut off
    assert outcome.tokens.tolist() == [3 * 500 + 2 * 100] * 10
    uncapped = replay_fixed(rs, 5)
    assert uncapped.correct.all()


def test_the_suite_compares_every_family_and_the_given_policies() -> None:
    dataset = random_dataset()
    single = BudgetPolicy(tiers=(Tier(name="one", max_difficulty=1.0, max_tokens=4096,
                                      max_samples=1, initial_samples=1,
                                      strategy=Strategy.SINGLE),))  # fmt: skip
    suite = run_suite(dataset, [NamedPolicy("single", single)], SuiteConfig(orderings=4))
    families = {r.family for r in suite.results}
    assert families == {"majority", "best-of-n", "adaptive-consistency", "esc", "margin",
                        "ponder"}
    assert suite.by_name("single").accuracy == pytest.approx(suite.by_name("maj@1").accuracy)
    assert suite.by_name("single").mean_samples == 1.0


def test_samples_at_accuracy_reads_the_frontier_between_points() -> None:
    suite = run_suite(random_dataset(), config=SuiteConfig(orderings=4))
    curve = suite.family("majority")
    top = max(r.accuracy for r in curve)
    assert samples_at_accuracy(curve, top + 0.01) is None
    assert samples_at_accuracy(curve, 0.0) == 1.0
    need = samples_at_accuracy(curve, top)
    assert need is not None
    assert 1.0 <= need <= suite.max_samples


def point(name: str, accuracy: float, samples: float, family: str = "ponder-curve",
          per_problem: list[float] | None = None) -> PolicyResult:  # fmt: skip
    right = np.array(per_problem if per_problem is not None else [accuracy] * 4)
    spent = np.full(len(right), samples)
    return PolicyResult(name=name, family=family, accuracy=accuracy, accuracy_se=0.0,
                        mean_samples=samples, mean_completed=samples, mean_tokens=None,
                        mean_cost=None, params={}, problem_accuracy=right,
                        problem_samples=spent, problem_tokens=spent)  # fmt: skip


def test_accuracy_at_samples_reads_the_frontier_the_other_way() -> None:
    curve = [point("a", 0.90, 1.0), point("b", 0.94, 3.0), point("dominated", 0.92, 4.0),
             point("c", 0.95, 5.0)]  # fmt: skip
    assert accuracy_at_samples(curve, 0.5) is None  # cheaper than any point
    assert accuracy_at_samples(curve, 1.0) == pytest.approx(0.90)
    assert accuracy_at_samples(curve, 2.0) == pytest.approx(0.92)
    assert accuracy_at_samples(curve, 4.0) == pytest.approx(0.945)  # not the dominated 0.92
    assert accuracy_at_samples(curve, 9.0) == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("ac_accuracy", "ac_samples", "fewer", "ponder_samples"),
    [
        (0.92, 3.0, "ponder", 2.0),  # Ponder's curve is at 0.92 with 2 samples
        (0.92, 2.0, "tie", 2.0),
        (0.92, 1.5, "baseline", 2.0),
        (0.96, 4.0, "never", None),  # Ponder tops out at 0.95
    ],
)
def test_each_baseline_point_is_judged_along_the_ponder_curve(
    ac_accuracy: float, ac_samples: float, fewer: str, ponder_samples: float | None
) -> None:
    suite = SuiteResult(dataset="d", problems=4, max_samples=8, results=[
        point("ac", ac_accuracy, ac_samples, family="adaptive-consistency",
              per_problem=[1.0, 1.0, 1.0, 4 * ac_accuracy - 3.0])])  # fmt: skip
    curve = [point("p1", 0.90, 1.0), point("p2", 0.94, 3.0), point("p3", 0.95, 5.0)]
    (row,) = compare_along_curve(suite, curve)
    assert row["fewer"] == fewer
    assert row["ponder_samples_at_equal_accuracy"] == ponder_samples
    assert row["ponder_accuracy_at_equal_samples"] == pytest.approx(
        accuracy_at_samples(curve, ac_samples))
    if fewer == "never":
        assert row["ponder_top"]["policy"] == "p3"
        assert row["ponder_top"]["gap_points"] == pytest.approx(1.0)
