"""The prompt prior learned from traffic: its free label, learning, bounded state, state file."""

from __future__ import annotations

import logging
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ponder_router.aggregate import StopRule
from ponder_router.budgets import (
    DemandModel,
    LoadState,
    assign_budget,
    default_policy,
    expected_request_tokens,
)
from ponder_router.difficulty import DifficultyEstimate
from ponder_router.plan import RecordedSample, RequestPlan, replay_request
from ponder_router.prior import Observation, PriorConfig, free_label, observe_plan
from ponder_router.prior_model import LEARN_BATCH, LearnedPrior
from ponder_router.prior_store import load_prior, save_prior

SMALL = PriorConfig(n_features=1 << 12, warm_requests=LEARN_BATCH)

HARD_WORDS = ["polynomial", "modulo", "divisible", "remainder", "primes"]
EASY_WORDS = ["apples", "basket", "ducks", "market", "eggs"]
FILLER = ["the", "a", "of", "find", "what", "is", "how", "many", "has", "and", "with"]


def prompt(rng: random.Random, hard: bool) -> str:
    topic = rng.sample(HARD_WORDS if hard else EASY_WORDS, 2)
    return " ".join(rng.sample(FILLER, 5) + topic + [str(rng.randint(2, 999))])


def auroc(scores: list[float], positives: list[bool]) -> float:
    pos = [s for s, p in zip(scores, positives, strict=True) if p]
    neg = [s for s, p in zip(scores, positives, strict=True) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


# -- the free label ------------------------------------------------------------------------


@pytest.mark.parametrize(("votes", "samples", "wave", "envelope", "confidence", "label"), [
    (2, 2, 2, 64, None, 0.0),         # the first wave agreed: easy
    (4, 4, 4, 4, None, 0.0),          # no room past the wave: the vote alone
    (2, 4, 4, 4, None, 0.5),          # half the samples against the leader
    (0, 3, 3, 3, None, 1.0),          # every sample abstained
    (5, 10, 2, 64, None, 0.25 + 0.5 * float(np.log1p(8) / np.log1p(62))),
    (62, 64, 2, 64, None, 0.5 * (2 / 64) + 0.5),   # drew the whole envelope
    (2, 2, 2, 64, 0.2, (0.0 + 0.0 + 0.5 * 0.8) / 1.5),  # agreed, but unconfident
])  # fmt: skip
def test_the_free_label_reads_contest_samples_and_confidence(
    votes: int, samples: int, wave: int, envelope: int, confidence: float | None, label: float,
) -> None:
    assert free_label(leader_votes=votes, samples=samples, wave_size=wave,
                      max_samples=envelope, confidence=confidence) == pytest.approx(label)


def test_the_free_label_grows_with_the_samples_a_request_needed() -> None:
    labels = [free_label(leader_votes=n // 2 + 1, samples=n, wave_size=2, max_samples=64)
              for n in (2, 4, 8, 16, 32, 64)]
    assert labels == sorted(labels)
    assert all(0.0 <= x <= 1.0 for x in labels)


@pytest.mark.parametrize(("votes", "samples"), [(1, 0), (3, 2), (-1, 2)])
def test_the_free_label_refuses_impossible_counts(votes: int, samples: int) -> None:
    with pytest.raises(ValueError, match="free_label"):
        free_label(leader_votes=votes, samples=samples, wave_size=2, max_samples=8)


def test_a_finished_vote_plan_is_observed_and_a_single_sample_one_is_not() -> None:
    policy = default_policy()
    budget = assign_budget(DifficultyEstimate(score=0.1), "auto", LoadState.idle(), policy)
    plan = RequestPlan.for_request(budget, StopRule(), can_score=False)
    replay_request(plan, [RecordedSample(a) for a in ["1", "2", "1", "1", "1", "1"] * 10])
    observation = observe_plan(plan)

    assert observation is not None
    assert 0.0 < observation.label < 1.0
    assert observation.extra_ratio == (plan.launched - budget.wave_size) / (
        budget.max_samples - budget.wave_size)
    single = assign_budget(DifficultyEstimate(score=0.1), "auto", LoadState.idle(), policy,
                           requested_max_samples=1)
    one = RequestPlan.for_request(single, StopRule(), can_score=False)
    replay_request(one, [RecordedSample("1")])
    assert observe_plan(one) is None


# -- learning --------------------------------------------------------------------------------


def test_the_prior_learns_to_rank_prompts_whose_words_came_with_contested_votes() -> None:
    rng = random.Random(7)
    prior = LearnedPrior(SMALL)
    for _ in range(400):
        hard = rng.random() < 0.3
        label = rng.uniform(0.4, 0.9) if hard else rng.uniform(0.0, 0.15)
        prior.learn(prompt(rng, hard), Observation(label, None))
    held_out = [rng.random() < 0.5 for _ in range(200)]
    scores = [prior.predict(prompt(rng, hard)) for hard in held_out]

    assert auroc(scores, held_out) > 0.95
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_the_prior_is_cold_until_it_has_learned_from_warm_requests() -> None:
    prior = LearnedPrior(SMALL)
    assert prior.predict("anything at all") == 0.0
    for i in range(SMALL.warm_requests - 1):
        prior.learn(f"prompt {i}", Observation(0.5, None))
    prior.flush()
    assert not prior.warm
    prior.learn("one more", Observation(0.5, None))
    prior.flush()
    assert prior.warm


def test_the_expected_extra_samples_come_from_requests_the_prior_scored_alike() -> None:
    prior = LearnedPrior(SMALL)
    assert prior.expected_extra_ratio(0.0) is None
    for i in range(8):
        prior.learn(f"p{i}", Observation(0.0, 0.25))
    assert prior.expected_extra_ratio(0.0) == pytest.approx(0.25)
    assert prior.expected_extra_ratio(0.95) is None


def test_the_prior_replaces_the_fixed_extra_sample_ratio_in_the_demand() -> None:
    budget = assign_budget(DifficultyEstimate(score=0.9), "auto", LoadState.idle(),
                           default_policy())
    fixed = expected_request_tokens(budget, DemandModel())
    learned = expected_request_tokens(budget, DemandModel(), extra_sample_ratio=0.0)
    tokens = DemandModel().token_fill_ratio * budget.max_tokens_per_sample

    assert learned == pytest.approx(budget.wave_size * tokens)
    assert fixed > learned


def test_the_state_has_the_same_size_whatever_the_traffic() -> None:
    rng = random.Random(1)
    small, large = LearnedPrior(SMALL), LearnedPrior(SMALL)
    for _ in range(LEARN_BATCH):
        small.learn(prompt(rng, False), Observation(0.1, 0.0))
    for _ in range(50 * LEARN_BATCH):
        large.learn(prompt(rng, rng.random() < 0.5) + " " + "x" * rng.randint(1, 500),
                    Observation(rng.random(), rng.random()))
    sizes = {name: array.nbytes for name, array in small.state().items()}

    assert {name: array.nbytes for name, array in large.state().items()} == sizes
    assert sizes["coef"] == SMALL.n_features * 8


def test_a_new_learning_rate_keeps_what_was_learned_and_a_new_size_starts_cold() -> None:
    prior = LearnedPrior(SMALL)
    for i in range(LEARN_BATCH):
        prior.learn(f"prompt {i}", Observation(0.5, None))
    faster = prior.reconfigure(SMALL.model_copy(update={"learning_rate": 0.2}))
    larger = prior.reconfigure(SMALL.model_copy(update={"n_features": 1 << 13}))

    assert faster is prior
    assert faster.seen == LEARN_BATCH
    assert larger.seen == 0


# -- the state file --------------------------------------------------------------------------


def trained(rng: random.Random, requests: int = 5 * LEARN_BATCH) -> LearnedPrior:
    prior = LearnedPrior(SMALL)
    for _ in range(requests):
        hard = rng.random() < 0.5
        prior.learn(prompt(rng, hard), Observation(0.8 if hard else 0.05, 0.5 if hard else 0.0))
    return prior


def test_a_saved_prior_loads_with_the_same_predictions_and_counts(tmp_path: Path) -> None:
    rng = random.Random(3)
    prior = trained(rng)
    path = tmp_path / "state" / "prior.npz"
    save_prior(prior, path)
    loaded = load_prior(SMALL, path)
    probes = [prompt(rng, hard) for hard in (True, False, True, False)]

    assert loaded.seen == prior.seen
    assert loaded.warm
    assert [loaded.predict(p) for p in probes] == [prior.predict(p) for p in probes]
    assert loaded.expected_extra_ratio(0.9) == prior.expected_extra_ratio(0.9)
    loaded.learn(probes[0], Observation(0.9, None))  # and it goes on learning
    loaded.flush()
    assert loaded.seen == prior.seen + 1
    assert list(tmp_path.joinpath("state").iterdir()) == [path]  # no temporary left


def test_saving_never_writes_prompt_text(tmp_path: Path) -> None:
    prior = LearnedPrior(SMALL)
    secret = "zebra quokka marmalade 778899"
    for i in range(LEARN_BATCH + 3):  # some of them still held, unfitted, at the save
        prior.learn(f"{secret} number {i}", Observation(0.5, 0.1))
    path = tmp_path / "prior.npz"
    save_prior(prior, path)
    with zipfile.ZipFile(path) as archive:
        contents = b"".join(archive.read(name) for name in archive.namelist())

    for word in ["zebra", "quokka", "marmalade", "778899", "number"]:
        assert word.encode() not in contents
        assert word.encode("utf-32-le") not in contents  # numpy's str arrays
    assert prior.seen == LEARN_BATCH + 3


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04truncated"])
def test_a_corrupt_state_file_is_logged_without_content_and_ignored(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "prior.npz"
    path.write_bytes(content + b" secret-prompt-words")
    with caplog.at_level(logging.WARNING):
        prior = load_prior(SMALL, path)

    assert prior.seen == 0
    assert not prior.warm
    assert "ignoring" in caplog.text
    assert "secret-prompt-words" not in caplog.text


def test_a_state_file_for_another_layout_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "prior.npz"
    save_prior(trained(random.Random(5)), path)
    with caplog.at_level(logging.WARNING):
        prior = load_prior(SMALL.model_copy(update={"n_features": 1 << 13}), path)

    assert prior.seen == 0
    assert "ignoring" in caplog.text


def test_a_missing_state_file_starts_cold_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        prior = load_prior(SMALL, tmp_path / "absent.npz")
    assert prior.seen == 0
    assert caplog.text == ""
