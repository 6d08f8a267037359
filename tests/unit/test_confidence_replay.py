"""``ponder evaluate``'s replay of the confidence policies, on generated data whose wrong
samples are unconfident (and on the shared Gemma traces when they are present)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ponder_router.aggregate import StopRule
from ponder_router.budgets import Budget
from ponder_router.confidence import ConfidenceConfig
from ponder_tools.cli import main as ponder
from ponder_tools.evaluation.confidence_replay import (
    ReplayedPolicy,
    compare_confidence,
    recorded,
    replay_confidence,
)
from ponder_tools.evaluation.dataset import Dataset, parse_lines

KNOBS = ConfidenceConfig(percentile=50.0, window=200, min_window=20, min_tokens=20)


def rows(problems: int = 60, samples: int = 12, seed: int = 1) -> list[dict[str, object]]:
    """Problems whose samples are right 60 % of the time; a right sample is confident
    (0.7-1.0) and short-ish, a wrong one unconfident (0.2-0.6) and long."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for p in range(problems):
        right = [rng.random() < 0.6 for _ in range(samples)]
        out.append({
            "id": f"p{p}", "question": f"question {p}?", "reference": "1",
            "answers": ["1" if r else str(rng.choice([2, 3])) for r in right],
            "confidences": [rng.uniform(0.7, 1.0) if r else rng.uniform(0.2, 0.6)
                            for r in right],
            "tokens": [rng.randint(100, 200) if r else rng.randint(200, 400) for r in right],
        })  # fmt: skip
    return out


def dataset(data: list[dict[str, object]] | None = None) -> Dataset:
    return parse_lines([json.dumps(r) for r in (data or rows())], strict=True)


def sequential(ds: Dataset) -> list[ReplayedPolicy]:
    flat = [Budget(tier="all", strategy="vote", max_tokens_per_sample=1 << 30,
                   max_samples=p.sample_count, wave_size=1, expected_tokens=0.0)
            for p in ds.problems]  # fmt: skip
    return [ReplayedPolicy("ac", flat, StopRule(), waves=False)]


def test_recorded_samples_follow_the_order_and_carry_confidences() -> None:
    problem = dataset().problems[0]
    samples = recorded(problem, [2, 0], [((10, 0.5),), (), ((5, 0.1),)])
    assert [s.confidence for s in samples] == [problem.confidences[2], problem.confidences[0]]
    assert samples[0].running == ((5, 0.1),)


def test_cancelling_unconfident_samples_saves_tokens_without_losing_accuracy() -> None:
    ds = dataset()
    by_variant = {r["variant"]: r for r in compare_confidence(ds, sequential(ds), KNOBS,
                                                              orderings=3)}  # fmt: skip

    assert by_variant["off"]["tokens_saved"] == 0.0
    assert float(str(by_variant["cancel"]["tokens_saved"])) > 0.2
    assert float(str(by_variant["cancel"]["mean_low_confidence_cancels"])) > 0
    assert float(str(by_variant["cancel"]["accuracy_change"])) >= -0.02
    assert float(str(by_variant["weighted"]["mean_low_confidence_cancels"])) == 0


def test_the_replay_is_deterministic_under_its_seed() -> None:
    ds = dataset()
    flat = sequential(ds)[0]
    first = replay_confidence(ds, flat.budgets, flat.rule, KNOBS, name="a", orderings=2)
    again = replay_confidence(ds, flat.budgets, flat.rule, KNOBS, name="a", orderings=2)
    assert first.as_dict() | {"seconds": 0} == again.as_dict() | {"seconds": 0}


def test_ponder_evaluate_replays_the_confidence_policies_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "conf.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows(problems=30)) + "\n")

    code = ponder(["evaluate", "--data", str(data), "--orderings", "2", "--confidence",
                   "--confidence-orderings", "2", "--confidence-min-tokens", "20",
                   "--out", str(tmp_path / "out")])  # fmt: skip

    assert code == 0
    out = capsys.readouterr().out
    assert "adaptive-consistency@0.95" in out
    assert "ponder-default" in out
    written = json.loads((tmp_path / "out" / "confidence_conf.json").read_text())
    assert {r["variant"] for r in written["rows"]} == {"off", "weighted", "cancel", "both"}


def test_ponder_evaluate_refuses_confidence_on_data_without_confidences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "plain.jsonl"
    data.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "confidences"})
                              for r in rows(problems=10)) + "\n")  # fmt: skip

    assert ponder(["evaluate", "--data", str(data), "--orderings", "2", "--confidence"]) == 2
    assert "confidences" in capsys.readouterr().err
