"""The verifier strategies and escalation end to end: the real OpenAI SDK -> real routers
(``ponder-router`` processes) -> real Triton.

Triton serves stand-ins (simulators): a weak and a strong ``ponder-sim-llm`` (the same
model with a different skill) and ``ponder-sim-rm``, a reward model whose scores tell
right from wrong as the real Qwen reward model's do. Every sample is fixed by its prompt
and seed and every score by its text, so each expectation below is recomputed in this
process from the same pure modules (``sim_llm.behaviour``, ``sim_rm.scoring``): the
checks are exact, can fail, and are not flaky. What a user sees: best-of-n answers with
the best-scored sample (and so beats one sample and the vote), or with the first one
the reward model accepts; sequential revision sends each attempt back to the model and
gains; a tier that escalates sends its requests to the larger service's router, at once
or, as an envelope, only when the small model's first wave disagrees, and says so.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from components import require_data
from fixtures_router import RouterProcess, StartRouterProcess
from fixtures_triton import start_server
from ponder_localstack.sim_llm.behaviour import SamplingParams, SimModel, SimSettings
from ponder_localstack.sim_rm import MODEL_NAME as RM_MODEL
from ponder_localstack.sim_rm.scoring import SimRewardModel
from ponder_localstack.triton import SimModelOptions, SimRewardModelOptions, TritonServer
from ponder_router.answers import answers_equal
from ponder_router.executor import _REVISE_SUFFIX  # the prompt the revise strategy sends
from ponder_tools.data import shared_data_dir

pytestmark = pytest.mark.triton

DATA_DIR = shared_data_dir()
WEAK = SimSettings(skill_logit_offset=-2.0, spread_logit=1.0)
"""A small model: right on a level-5 problem a little over half the time, samples split."""
STRONG = SimSettings(skill_logit_offset=1.0, spread_logit=1.0)
SEED = 7
MAX_TOKENS = 2048  # no sample of the stand-in comes near it: none is cut off or forced
SAMPLES = 4


def model_options(name: str, settings: SimSettings) -> SimModelOptions:
    return SimModelOptions(name=name, token_latency_ms=0.5, max_concurrency=16,
                           skill_logit_offset=settings.skill_logit_offset,
                           spread_logit=settings.spread_logit)  # fmt: skip


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = start_server(tmp_path_factory.mktemp("triton-verifier"),
                          model_options("sim-small", WEAK), model_options("sim-large", STRONG),
                          SimRewardModelOptions())  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hard_problems() -> list[dict[str, Any]]:
    path = require_data(DATA_DIR / "math" / "math500_test.jsonl")
    problems = [json.loads(line) for line in path.read_text().splitlines()]
    return [p for p in problems if p["level"] == 5][:24]


@pytest.fixture(scope="module")
def small_model() -> SimModel:
    base = SimModel.load(DATA_DIR)
    return SimModel(base.catalog, base.calibration, WEAK)


def router_config(triton: TritonServer, service: str, model: str,
                  **overrides: Any) -> dict[str, Any]:  # fmt: skip
    tier = {"name": "all", "maxDifficulty": 1.0, "maxTokens": MAX_TOKENS,
            "maxSamples": SAMPLES, "initialSamples": SAMPLES, "strategy": "vote"}
    return {"service": service, "modelName": f"{service}-reasoner", "tritonModel": model,
            "endpoints": [triton.grpc_url], "budgets": {"tiers": [tier]},
            "stopping": {"kind": "none"},  # every sample drawn: the vote is deterministic
            "verifier": {"model": RM_MODEL, "timeoutSeconds": 60}, **overrides}  # fmt: skip


def client(router: RouterProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="none", max_retries=0,
                              timeout=120)  # fmt: skip


async def reports(router: RouterProcess, problems: list[dict[str, Any]],
                  **ponder: Any) -> list[dict[str, Any]]:  # fmt: skip
    """The ``ponder`` report of each problem asked of ``router`` (completions API)."""
    model = json.loads(router.config_path.read_text())["modelName"]
    async with client(router) as api:

        async def one(problem: dict[str, Any]) -> dict[str, Any]:
            response = await api.completions.create(
                model=model, prompt=problem["problem"], max_tokens=MAX_TOKENS, seed=SEED,
                extra_body={"ponder": ponder})  # fmt: skip
            return dict(response.model_extra["ponder"])  # type: ignore[index]

        return list(await asyncio.gather(*(one(p) for p in problems)))


def accuracy(answers: list[dict[str, Any]], problems: list[dict[str, Any]]) -> int:
    """How many reports answer their problem right."""
    return sum(r["answer"] is not None and answers_equal(r["answer"], p["answer"])
               for r, p in zip(answers, problems, strict=True))  # fmt: skip


def model_requests(triton: TritonServer, model: str) -> float:
    """Inference requests ``model`` has served on ``triton`` (Triton's own metric)."""
    text = httpx.get(triton.metrics_url).text
    pattern = re.compile(
        rf'^nv_inference_request_success\{{.*model="{re.escape(model)}".*\}} (\S+)$')
    return sum(float(m.group(1)) for line in text.splitlines() if (m := pattern.match(line)))


def sample_params(index: int) -> SamplingParams:
    """What the router asks of sample ``index`` of a request with seed ``SEED``."""
    return SamplingParams(max_tokens=MAX_TOKENS, seed=SEED + index)


# -- best-of-n ---------------------------------------------------------------------------


async def test_best_of_n_answers_with_the_sample_the_reward_model_scores_highest(
    triton: TritonServer, start_router_process: StartRouterProcess,
    hard_problems: list[dict[str, Any]], small_model: SimModel,
) -> None:
    router = start_router_process(router_config(triton, "small", "sim-small"))
    verifier_calls = model_requests(triton, RM_MODEL)
    best = await reports(router, hard_problems, strategy="best-of-n")

    reward_model = SimRewardModel(lambda prompt: small_model.profile_prompt(prompt).reference)
    for report, problem in zip(best, hard_problems, strict=True):
        assert report["strategy"] == "best-of-n"
        assert report["aggregation"] == f"best-of-n (verifier {RM_MODEL})"
        assert report["samples"]["completed"] == SAMPLES
        samples = [small_model.complete(problem["problem"], sample_params(i))
                   for i in range(SAMPLES)]  # fmt: skip
        scores = [reward_model.score(problem["problem"] + "\n\n" + s.text) for s in samples]
        chosen = max(range(SAMPLES), key=lambda i: (scores[i], -i))
        assert report["answer"] == samples[chosen].answer
    # Every sample with an answer was scored once, on Triton.
    assert model_requests(triton, RM_MODEL) - verifier_calls == SAMPLES * len(hard_problems)


async def test_an_informative_reward_model_makes_best_of_n_beat_one_sample_and_the_vote(
    triton: TritonServer, start_router_process: StartRouterProcess,
    hard_problems: list[dict[str, Any]],
) -> None:
    router = start_router_process(router_config(triton, "small", "sim-small"))
    single = await reports(router, hard_problems, strategy="single")
    vote = await reports(router, hard_problems, strategy="vote")
    best = await reports(router, hard_problems, strategy="best-of-n")

    assert [r["strategy"] for r in single + vote] == ["single"] * 24 + ["vote"] * 24
    # The same seeds: the vote and best-of-n choose among the same four samples.
    assert accuracy(best, hard_problems) >= accuracy(single, hard_problems) + 4
    assert accuracy(best, hard_problems) > accuracy(vote, hard_problems)


async def test_a_score_threshold_stops_best_of_n_at_the_first_sample_the_reward_model_accepts(
    triton: TritonServer, start_router_process: StartRouterProcess,
    hard_problems: list[dict[str, Any]], small_model: SimModel,
) -> None:
    threshold, most = 3.0, 8  # a right answer scores 3.0 or more about half the time
    tier = {"name": "all", "maxDifficulty": 1.0, "maxTokens": MAX_TOKENS, "maxSamples": most,
            "initialSamples": 1, "strategy": "best-of-n"}  # fmt: skip
    router = start_router_process(router_config(
        triton, "small", "sim-small", budgets={"tiers": [tier]},
        stopping={"kind": "none", "scoreThreshold": threshold}))  # fmt: skip
    verifier_calls = model_requests(triton, RM_MODEL)
    got = await reports(router, hard_problems)

    reward_model = SimRewardModel(lambda prompt: small_model.profile_prompt(prompt).reference)
    drawn = 0
    for report, problem in zip(got, hard_problems, strict=True):
        samples, scores = [], []
        while len(samples) < most and not (scores and scores[-1] >= threshold):
            samples.append(small_model.complete(problem["problem"], sample_params(len(samples))))
            scores.append(reward_model.score(problem["problem"] + "\n\n" + samples[-1].text))
        assert report["samples"]["launched"] == len(samples)
        verified = scores[-1] >= threshold
        assert report["stop_reason"] == ("verified" if verified else "budget-exhausted")
        chosen = max(range(len(samples)), key=lambda i: (scores[i], -i))
        assert report["answer"] == samples[chosen].answer
        drawn += len(samples)
    # Each sample was scored as it finished, once; most requests stopped well short.
    assert model_requests(triton, RM_MODEL) - verifier_calls == drawn
    assert drawn < most * len(hard_problems) / 2


# -- sequential revision -----------------------------------------------------------------


async def test_revise_sends_each_attempt_back_and_answers_with_the_last_revision(
    triton: TritonServer, start_router_process: StartRouterProcess,
    hard_problems: list[dict[str, Any]], small_model: SimModel,
) -> None:
    router = start_router_process(router_config(triton, "small", "sim-small"))
    single = await reports(router, hard_problems, strategy="single")
    revised = await reports(router, hard_problems, strategy="revise")

    for report, problem in zip(revised, hard_problems, strict=True):
        assert report["strategy"] == "revise"
        assert report["aggregation"] == "revise"
        assert report["samples"]["completed"] == SAMPLES
        attempt = small_model.complete(problem["problem"], sample_params(0))
        for index in range(1, SAMPLES):  # each prompt carries the previous attempt
            attempt = small_model.complete(
                problem["problem"] + _REVISE_SUFFIX.format(previous=attempt.text),
                sample_params(index))  # fmt: skip
        assert report["answer"] == attempt.answer
    assert accuracy(revised, hard_problems) >= accuracy(single, hard_problems) + 4


# -- escalation to a larger service ------------------------------------------------------


async def test_a_tier_that_escalates_sends_its_requests_to_the_larger_service_at_once(
    triton: TritonServer, start_router_process: StartRouterProcess,
    hard_problems: list[dict[str, Any]],
) -> None:
    large = start_router_process(router_config(triton, "large", "sim-large"))
    small_tiers = [
        {"name": "easy", "maxDifficulty": 0.5, "maxTokens": MAX_TOKENS, "maxSamples": SAMPLES,
         "initialSamples": SAMPLES, "strategy": "vote"},
        {"name": "hard", "maxDifficulty": 1.0, "maxTokens": MAX_TOKENS, "maxSamples": SAMPLES,
         "initialSamples": SAMPLES, "strategy": "vote", "escalateTo": "large"},
    ]  # fmt: skip
    small = start_router_process(router_config(
        triton, "small", "sim-small", budgets={"tiers": small_tiers},
        escalation={"large": large.url}))  # fmt: skip
    problems = hard_problems[:8]

    small_before = model_requests(triton, "sim-small")
    large_before = model_requests(triton, "sim-large")
    escalated = await reports(small, problems, difficulty=0.9)
    assert model_requests(triton, "sim-small") == small_before  # the small model never ran
    assert model_requests(triton, "sim-large") - large_before == SAMPLES * len(problems)
    for report in escalated:
        assert report["answered_by"] == "large"
        assert report["escalated_from"] == "small"
        assert report["samples"]["completed"] == SAMPLES

    kept = await reports(small, problems, difficulty=0.2)
    assert model_requests(triton, "sim-small") - small_before == SAMPLES * len(problems)
    assert all(r["answered_by"] == "small" and r.get("escalated_from") is None for r in kept)
    assert accuracy(escalated, problems) > accuracy(kept, problems)


async def test_a_contested_first_wave_on_the_small_model_escalates_and_an_agreeing_one_does_not(
    triton: TritonServer, start_router_process: StartRouterProcess,
    hard_problems: list[dict[str, Any]], small_model: SimModel,
) -> None:
    large = start_router_process(router_config(triton, "large", "sim-large"))
    envelope = {"name": "hard", "maxDifficulty": 1.0, "maxTokens": MAX_TOKENS, "maxSamples": 8,
                "initialSamples": SAMPLES, "strategy": "vote", "escalateTo": "large",
                "stopOnFirstWaveAgreement": True}  # fmt: skip
    small = start_router_process(router_config(
        triton, "small", "sim-small", budgets={"tiers": [envelope]},
        stopping={}, escalation={"large": large.url}))  # the default rule stops agreement
    alone = start_router_process(router_config(triton, "alone", "sim-small"))

    large_before = model_requests(triton, "sim-large")
    got = await reports(small, hard_problems)  # no hint: the samples are the evidence
    contested = 0
    for report, problem in zip(got, hard_problems, strict=True):
        first_wave = [small_model.complete(problem["problem"], sample_params(i)).answer
                      for i in range(SAMPLES)]  # fmt: skip
        agreed = all(a is not None and answers_equal(a, first_wave[0]) for a in first_wave)
        if agreed:
            assert report["answered_by"] == "small"
            # an escalating tier waits for its whole first wave before any rule stops it
            assert report["stop_reason"] == "first-wave-agreed"
            assert report["answer"] == first_wave[0]
        else:
            assert report["answered_by"] == "large"
            assert report["escalated_from"] == "small"
            contested += 1
    assert 0 < contested < len(hard_problems)
    assert model_requests(triton, "sim-large") - large_before == SAMPLES * contested
    # The larger model answers what the small one disputes better than the small one would.
    assert accuracy(got, hard_problems) > accuracy(await reports(alone, hard_problems),
                                                   hard_problems)  # fmt: skip
