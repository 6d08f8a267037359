"""Calibration: concave hulls, greedy allocation, bins, and a policy the router loads."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from components import require_data
from ponder_localstack.standin import generate_standin
from ponder_operator.api.spec import BudgetsSpec
from ponder_router.aggregate import StopRuleKind
from ponder_router.budgets import BudgetPolicy, Strategy, assign_tier
from ponder_router.difficulty import DEFAULT_WEIGHTS, FeatureEstimator, score_features
from ponder_router.settings import RouterConfig
from ponder_tools.cli import main as ponder
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.allocate import (
    Point,
    allocate_accuracy,
    allocate_budget,
    greedy_path,
    upper_hull,
)
from ponder_tools.evaluation.calibrate import (
    Binning,
    CalibrationConfig,
    Candidate,
    ModelData,
    bin_allocation,
    budgets_spec,
    build_table,
    compare_estimators,
    quantile_binning,
    solve,
    split_ids,
)
from ponder_tools.evaluation.calibration_report import solution_report
from ponder_tools.evaluation.dataset import load_dataset, write_jsonl
from ponder_tools.evaluation.stats import auroc, shrunk_bin_means, shrunk_bin_stats, spearman
from ponder_tools.evaluation.suite import AC_THRESHOLDS, SuiteConfig, run_suite

DATA_DIR = shared_data_dir()


def curves(seed: int, bins: int = 4, points: int = 7) -> list[list[Point]]:
    """Noisy saturating accuracy curves, some points below the hull on purpose."""
    rng = random.Random(seed)
    out = []
    for _ in range(bins):
        ceiling, rate = rng.uniform(0.5, 1.0), rng.uniform(0.2, 1.5)
        out.append([Point(cost=float(c), accuracy=ceiling * (1 - np.exp(-rate * c))
                          + rng.uniform(-0.03, 0.03), label=c) for c in range(1, points + 1)])
    return out


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_data(DATA_DIR / "math")
    folder = tmp_path_factory.mktemp("standin")
    return write_jsonl(generate_standin(DATA_DIR, samples_per_problem=12, problem_limit=120),
                       folder / "standin.jsonl")  # fmt: skip


def test_the_upper_hull_is_concave_and_drops_dominated_points() -> None:
    for seed in range(20):
        for points in curves(seed):
            hull = upper_hull(points)
            assert hull[0].cost == min(p.cost for p in points)
            slopes = [(b.accuracy - a.accuracy) / (b.cost - a.cost)
                      for a, b in itertools.pairwise(hull)]  # fmt: skip
            assert all(s > 0 for s in slopes)
            assert all(x > y for x, y in itertools.pairwise(slopes))
            for p in points:  # nothing lies above the hull
                for a, b in itertools.pairwise(hull):
                    if a.cost <= p.cost <= b.cost:
                        line = a.accuracy + (p.cost - a.cost) * (b.accuracy - a.accuracy) / (
                            b.cost - a.cost)
                        assert p.accuracy <= line + 1e-12


def test_allocation_is_monotone_in_the_compute_budget() -> None:
    for seed in range(20):
        hulls = [upper_hull(c) for c in curves(seed)]
        path = greedy_path(hulls, [0.1, 0.2, 0.3, 0.4])
        budgets = np.linspace(0.5, 8.0, 40)
        steps = [allocate_budget(path, b) for b in budgets]
        for before, after in itertools.pairwise(steps):
            assert after.cost >= before.cost
            assert after.accuracy >= before.accuracy
            assert all(a >= b for a, b in zip(after.choice, before.choice, strict=True))
        for budget, step in zip(budgets, steps, strict=True):
            assert step.cost <= budget + 1e-9 or step is path[0]


def test_greedy_allocation_is_optimal_among_hull_points_at_its_own_steps() -> None:
    for seed in range(10):
        hulls = [upper_hull(c) for c in curves(seed, bins=3, points=6)]
        weights = [0.5, 0.3, 0.2]
        for step in greedy_path(hulls, weights):
            best = max(
                sum(w * h[i].accuracy for w, h, i in zip(weights, hulls, choice, strict=True))
                for choice in itertools.product(*(range(len(h)) for h in hulls))
                if sum(w * h[i].cost for w, h, i in zip(weights, hulls, choice, strict=True))
                <= step.cost + 1e-12
            )  # fmt: skip
            assert step.accuracy == pytest.approx(best)


def test_allocating_for_an_accuracy_takes_the_cheapest_step_reaching_it() -> None:
    path = greedy_path([upper_hull(c) for c in curves(3)], [0.25] * 4)
    target = (path[0].accuracy + path[-1].accuracy) / 2
    step = allocate_accuracy(path, target)
    assert step.accuracy >= target
    assert all(s.accuracy < target for s in path if s.cost < step.cost)


def test_quantile_bins_hold_equal_shares_and_never_an_empty_bin() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.05, 0.9, 500)
    binning = quantile_binning("predicted", scores, 5)
    counts = np.bincount(binning.assign(scores))
    assert binning.count == 5
    assert counts.min() >= 95
    assert binning.edges[-1] == 1.0
    tied = np.concatenate([np.zeros(400), np.full(60, 0.025), rng.uniform(0.05, 1, 40)])
    oracle = quantile_binning("oracle", tied, 5)
    assert np.bincount(oracle.assign(tied)).min() > 0


def test_shrinkage_pools_bins_that_do_not_differ_and_keeps_bins_that_do() -> None:
    rng = np.random.default_rng(1)
    bins = np.repeat(np.arange(4), 100)
    everyone = np.ones(400, dtype=bool)
    noise = rng.binomial(1, 0.8, 400).astype(float)
    pooled = shrunk_bin_means(noise, bins, everyone, 4)
    assert np.ptp(pooled) < 0.5 * np.ptp([noise[bins == b].mean() for b in range(4)])
    signal = rng.binomial(1, np.repeat([0.2, 0.5, 0.8, 0.95], 100)).astype(float)
    kept = shrunk_bin_means(signal, bins, everyone, 4)
    raw = np.array([signal[bins == b].mean() for b in range(4)])
    assert np.abs(kept - raw).max() < 0.02


def test_a_shrunk_mean_has_the_standard_error_of_what_it_pools() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(0.0, 1.0, 400)
    everyone = np.ones(400, dtype=bool)
    one_bin = np.zeros(400, dtype=np.int64)
    _, se = shrunk_bin_stats(values, one_bin, everyone, 1)
    assert se[0] == pytest.approx(values.std(ddof=1) / 20)
    bins = np.repeat(np.arange(4), 100)
    pooled, se = shrunk_bin_stats(values, bins, everyone, 4)  # no signal: all pooled
    assert np.allclose(pooled, values.mean())
    assert np.allclose(se, values.std() / 20, rtol=0.2)
    apart = values + np.repeat([0.0, 5.0, 10.0, 15.0], 100)  # bins far apart: kept apart
    _, se = shrunk_bin_stats(apart, bins, everyone, 4)
    own = [apart[bins == b].std(ddof=1) / 10 for b in range(4)]
    assert np.allclose(se, own, rtol=0.05)


def candidate(accuracy: np.ndarray, samples: float) -> Candidate:
    spent = np.full(len(accuracy), samples)
    return Candidate(0, Strategy.VOTE, int(samples), 1, accuracy, spent, spent, spent)


@pytest.mark.parametrize(("selection_se", "chosen"), [(0.0, "lucky"), (2.0, "steady")])
def test_a_lucky_candidate_displaces_a_steady_one_only_by_more_than_its_noise(
    selection_se: float, chosen: str
) -> None:
    reference = np.full(100, 0.9)  # maj@all
    steady = candidate(reference.copy(), 6.0)  # agrees with maj@all everywhere
    lucky = candidate(np.where(np.arange(100) % 2 == 0, 1.0, 0.81), 3.0)  # +0.5 points
    config = CalibrationConfig(budget=8.0, selection_se=selection_se)
    result = bin_allocation(Binning("predicted", (1.0,)), np.zeros(100), [steady, lucky],
                            np.ones(100, dtype=bool), config, reference)  # fmt: skip
    picked = result.chosen([steady, lucky])[0]
    assert picked is {"steady": steady, "lucky": lucky}[chosen]
    assert result.penalties[0][0] == 0.0


@pytest.mark.parametrize(("best_of_all_correct", "chosen"), [(92, "verified"), (86, "vote")])
def test_matching_maj_all_counts_noise_against_each_strategys_own_full_compute_answer(
    best_of_all_correct: int, chosen: str
) -> None:
    """A verifier-stopped best-of-n that tracks best-of-all matches maj@all when best-of-all
    does: its differences from maj@all are the verifier's, not the stopping's noise."""
    reference = (np.arange(100) < 90).astype(float)  # maj@all: 90 of 100
    best_all = np.zeros(100)
    best_all[:best_of_all_correct] = 1.0  # right where maj@all is, and on a few more ...
    best_all[88:90] = 0.0  # ... but wrong on two that maj@all gets
    spent = {n: np.full(100, n) for n in (1.0, 1.5, 6.0)}
    single = Candidate(0, Strategy.SINGLE, 1, 1, np.full(100, 0.8), *[spent[1.0]] * 3)
    vote = Candidate(0, Strategy.VOTE, 16, 3, reference.copy(), *[spent[6.0]] * 3)
    verified = Candidate(0, Strategy.BEST_OF_N, 8, 1, best_all.copy(), *[spent[1.5]] * 3)
    anchors = {(0, Strategy.VOTE): reference, (0, Strategy.BEST_OF_N): best_all}
    result = bin_allocation(Binning("predicted", (1.0,)), np.zeros(100),
                            [single, vote, verified], np.ones(100, dtype=bool),
                            CalibrationConfig(), reference, anchors)  # fmt: skip
    assert result.reached
    picked = result.chosen([single, vote, verified])[0]
    assert picked is {"verified": verified, "vote": vote}[chosen]


def test_every_adaptive_consistency_configuration_is_a_one_tier_candidate(standin: Path) -> None:
    dataset = load_dataset(standin)
    config = CalibrationConfig(orderings=3)
    table = build_table([ModelData("serving", dataset)], config)
    assert {rule.kind for rule in table.candidates} == set(config.stop_kinds)
    votes = table.candidates[config.service_rule(StopRuleKind.BETA)]
    suite = run_suite(dataset, config=SuiteConfig(orderings=3), include_default=False)
    most = max(p.sample_count for p in dataset.problems)
    for threshold in AC_THRESHOLDS:
        mine = next(c for c in votes if c.max_samples == most and c.stop_threshold == threshold)
        theirs = suite.by_name(f"adaptive-consistency@{threshold:g}")
        assert np.allclose(mine.accuracy, theirs.problem_accuracy)  # same stops, same answers
        assert mine.samples.mean() >= theirs.mean_samples  # waves may launch a little more


def test_ranking_statistics_on_known_cases() -> None:
    xs = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(xs, xs) == pytest.approx(1.0)
    assert spearman(xs, -xs) == pytest.approx(-1.0)
    assert spearman(xs, np.ones(4)) is None
    assert auroc(xs, np.array([False, False, True, True])) == 1.0
    assert auroc(np.ones(4), np.array([False, True, False, True])) == 0.5
    assert auroc(xs, np.zeros(4, dtype=bool)) is None


def test_the_split_is_stable_disjoint_and_of_the_asked_size() -> None:
    ids = [f"p{i}" for i in range(100)]
    train, test = split_ids(ids, 0.3, seed=0)
    assert len(test) == 30
    assert not train & test
    assert train | test == set(ids)
    again, _ = split_ids(list(reversed(ids)), 0.3, seed=0)
    assert again == train
    _fewer, fewer_test = split_ids(ids[:90], 0.3, seed=0)
    assert len(fewer_test & test) >= 20  # adding problems moves few others


def test_calibration_output_loads_as_the_router_budget_policy(standin: Path,
                                                              tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "calibrated"
    assert ponder(["calibrate", "--data", str(standin), "--orderings", "4",
                   "--out", str(out)]) == 0  # fmt: skip
    policy = BudgetPolicy.model_validate(yaml.safe_load((out / "policy.yaml").read_text()))
    assert policy.tiers[-1].max_difficulty == 1.0
    RouterConfig.model_validate({"service": "qwen", "modelName": "qwen", "tritonModel": "qwen",
                                 "endpoints": ["127.0.0.1:8001"],
                                 "budgets": yaml.safe_load((out / "policy.yaml").read_text())})
    spec = yaml.safe_load((out / "budgets-spec.yaml").read_text())["budgets"]
    BudgetsSpec.model_validate(spec)
    report = json.loads((out / "calibration.json").read_text())
    assert report["split"] == {"train": 84, "test": 36}
    # On this data the refit weights rank the test split worse: no estimator ships.
    assert report["estimator"]["shipped"] == "router_default_weights"
    assert report["estimator_signal"]["weights"] == "router_default_weights"
    assert policy.estimator is None
    assert "estimator" not in spec
    assert "ponder-calibrated" in {c["policy"] for c in report["held_out"]["comparisons"]}
    assert ponder(["evaluate", "--data", str(standin), "--orderings", "3",
                   "--policy", f"calibrated={out / 'policy.yaml'}", "--out", str(out)]) == 0
    evaluated = json.loads((out / "evaluate_standin.json").read_text())
    assert "calibrated" in {r["name"] for r in evaluated["results"]}
    assert (out / "evaluate_standin.png").stat().st_size > 10_000


def test_evaluate_runs_ponders_policies_under_the_stop_rule_it_is_given(
    standin: Path, tmp_path: Path
) -> None:
    assert ponder(["evaluate", "--data", str(standin), "--orderings", "3", "--stop-rule",
                   "margin", "--stop-margin", "2", "--out", str(tmp_path)]) == 0  # fmt: skip
    evaluated = json.loads((tmp_path / "evaluate_standin.json").read_text())
    by_name = {r["name"]: r for r in evaluated["results"]}
    rule = by_name["ponder-default"]["params"]["stop_rule"]
    assert (rule["kind"], rule["margin"]) == ("margin", 2)
    # The margin rule's own rows: a lead of 1 is one sample, longer leads draw more.
    margins = [by_name[f"margin@{m}"] for m in (1, 2, 3, 4, 5)]
    assert margins[0]["mean_samples"] == 1.0
    assert margins[0]["accuracy"] == by_name["maj@1"]["accuracy"]
    assert [r["mean_samples"] for r in margins] == sorted(r["mean_samples"] for r in margins)


def keyword_trap(path: Path, problems: int = 120) -> Path:
    """Problems the default weights read backwards: the hard half (3 of 8 samples right,
    the wrong ones all different) asks to "compute and evaluate", which those weights
    count as easy words; the easy half (every sample right) does not."""
    rng = random.Random(7)
    rows = []
    for i in range(problems):
        hard = i % 2 == 1
        filler = " ".join(rng.choice(["apples", "boxes", "trains", "coins", "hats"])
                          for _ in range(rng.randint(3, 12)))  # fmt: skip
        verb = "Compute and evaluate" if hard else "Tell us, please, about"
        answers = ["1", "1", "1", "2", "3", "4", "5", "6"] if hard else ["1"] * 8
        rows.append({"id": f"p{i}", "question": f"{verb} the count of {filler}.",
                     "reference": "1",
                     "samples": [f"The answer is \\boxed{{{a}}}." for a in answers]})  # fmt: skip
    return write_jsonl(rows, path)


def test_refit_weights_that_rank_held_out_problems_better_ship_with_tiers_cut_on_their_score(
    tmp_path: Path,
) -> None:
    data = keyword_trap(tmp_path / "trap.jsonl")
    out = tmp_path / "calibrated"
    assert ponder(["calibrate", "--data", str(data), "--orderings", "4",
                   "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "calibration.json").read_text())
    quality = report["estimator"]
    assert quality["refit_on_train"]["auroc_pass1_below_half"] > \
        quality["router_default_weights"]["auroc_pass1_below_half"]  # fmt: skip
    assert quality["shipped"] == report["estimator_signal"]["weights"] == "refit_on_train"
    policy = BudgetPolicy.model_validate(yaml.safe_load((out / "policy.yaml").read_text()))
    assert policy.estimator is not None
    assert policy.estimator.model_dump() == quality["refit_weights"]
    spec = BudgetsSpec.model_validate(
        yaml.safe_load((out / "budgets-spec.yaml").read_text())["budgets"])
    assert spec.estimator is not None
    assert spec.estimator.model_dump() == quality["refit_weights"]
    # The router, scoring with the shipped weights, sends every hard problem to a voting
    # tier and most easy ones to a single sample (a quantile bin straddles the two); under
    # the default weights the same bounds tell them apart no longer: they were cut on the
    # shipped score.
    problems = load_dataset(data).problems
    hard = [p.question for p in problems if p.pass_at_1 < 0.5]
    easy = [p.question for p in problems if p.pass_at_1 >= 0.5]

    def votes(estimator: FeatureEstimator, questions: list[str]) -> float:
        """The share of ``questions`` given more than one sample."""
        tiers = [assign_tier(estimator.estimate(q), "auto", policy) for q in questions]
        return sum(t.max_samples > 1 for t in tiers) / len(tiers)

    shipped, default = policy.feature_estimator(), FeatureEstimator(DEFAULT_WEIGHTS)
    assert votes(shipped, hard) == 1.0
    assert votes(shipped, easy) < 0.5
    assert votes(default, easy) == votes(default, hard)
    held_out = {c["policy"]: c for c in report["held_out"]["comparisons"]}
    assert held_out["ponder-calibrated"]["accuracy"] == 1.0


def test_solve_bins_problems_on_the_score_of_the_weights_it_ships(tmp_path: Path) -> None:
    dataset = load_dataset(keyword_trap(tmp_path / "trap.jsonl"))
    config = CalibrationConfig(orderings=4, thresholds=(0.9,))
    table = build_table([ModelData("serving", dataset)], config)
    train_ids, _ = split_ids(table.ids, config.test_fraction, config.seed)
    train = np.array([i in train_ids for i in table.ids])
    weights = compare_estimators(table, train).shipped
    assert weights is not None

    refit = solve(table, train, config, weights)
    refit_scores = np.array([score_features(f, weights) for f in table.features])
    assert refit.predicted.binning == quantile_binning("predicted", refit_scores[train],
                                                       config.bins)  # fmt: skip
    assert refit.policy.estimator == weights
    assert budgets_spec(refit.policy, refit.rule, None)["estimator"] == weights.model_dump()
    default = solve(table, train, config)  # the default score ranks these backwards
    assert default.predicted.binning.count == 1
    assert default.policy.estimator is None
    assert "estimator" not in budgets_spec(default.policy, default.rule, None)


def test_a_large_model_is_escalated_to_only_where_it_is_cheaper(
    standin: Path, tmp_path: Path
) -> None:
    small = write_jsonl(generate_standin(DATA_DIR, samples_per_problem=12, problem_limit=120,
                                         skill_logit_offset=-2.0), tmp_path / "small.jsonl")
    models = [ModelData("serving", load_dataset(small), 1.0),
              ModelData("big-model", load_dataset(standin), 1.0)]
    config = CalibrationConfig(orderings=4, cost_unit="cost", bins=2, thresholds=(0.9,),
                               budget=300.0)  # about five samples of the small model
    train = np.ones(120, dtype=bool)
    train[::4] = False
    same_price = solve(build_table(models, config), train, config)
    assert {t.escalate_to for t in same_price.policy.tiers} == {"big-model"}
    dear = [models[0], ModelData("big-model", models[1].dataset, 1000.0)]
    too_dear = solve(build_table(dear, config), train, config)
    assert {t.escalate_to for t in too_dear.policy.tiers} == {None}
    report = solution_report(build_table(dear, config), train, too_dear, config)
    for row in report["escalation"]:  # at equal accuracy the small model is the cheaper
        assert {c["cheaper"] for c in row["small_vs_large"]} == {"small"}


def test_best_of_n_enters_the_allocation_only_with_a_verifier(tmp_path: Path) -> None:
    require_data(DATA_DIR / "samples")
    from ponder_tools.evaluation.dataset import convert_qwen25math

    qwen = load_dataset(write_jsonl(convert_qwen25math(DATA_DIR), tmp_path / "qwen.jsonl"))
    config = CalibrationConfig(orderings=4, thresholds=(0.9,), budget=2.0, bins=1,
                               verifier_model="reward-model")  # fmt: skip
    table = build_table([ModelData("serving", qwen)], config)
    # one rule per stopping kind and score threshold
    assert len(table.candidates) == len(config.stop_kinds) * (1 + len(config.score_quantiles))
    train = np.ones(len(table.ids), dtype=bool)
    votes_only = solve(table, train, dataclasses.replace(config, verifier_model=None))
    assert all(c.strategy is not Strategy.BEST_OF_N for c in votes_only.candidates)
    assert votes_only.rule.score_threshold is None
    with_verifier = solve(table, train, config)
    assert any(c.strategy is Strategy.BEST_OF_N for c in with_verifier.candidates)
    (tier,) = with_verifier.policy.tiers
    assert tier.strategy is Strategy.BEST_OF_N
    assert tier.verifier_model == "reward-model"
    # It stops on the verifier's score, one sample at a time, at a threshold from train.
    assert with_verifier.rule.score_threshold is not None
    assert tier.initial_samples == 1
    spec = budgets_spec(with_verifier.policy, with_verifier.rule, config.verifier_model)
    parsed = BudgetsSpec.model_validate(spec)
    assert parsed.stopping.score_threshold == with_verifier.rule.score_threshold
