"""The prompt prior in the running router: it learns from finished requests, takes over the
tier once warm, and survives a restart through its state file.

Requests go through httpx's ASGI transport into ``create_app``; Triton is the scripted
``FakeBackend``: prompts about polynomials get scattered answers (a contested vote), the
others a unanimous one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from ponder_router.app import create_app
from ponder_router.budgets import Budget
from ponder_router.demand import expected_remaining_tokens
from ponder_router.executor import RequestSpec
from ponder_router.prior import Observation, PriorConfig
from ponder_router.prior_model import LEARN_BATCH
from ponder_router.prior_store import load_prior
from ponder_router.triton import SampleParams
from test_router_app import config, serve
from test_router_fakes import FakeFleet, Script

HARD_TOPIC = "polynomial"


def script(prompt: str, params: SampleParams) -> Script:
    if HARD_TOPIC in prompt:
        return Script(answer=str((params.seed or 0) % 4))
    return Script(answer="42")


def prior_config(state: Path, **knobs: Any) -> dict[str, Any]:
    return {"prior": {"enabled": True, "nFeatures": 4096, "warmRequests": 2 * LEARN_BATCH,
                      "learningRate": 0.2, "statePath": str(state), **knobs}}  # fmt: skip


PROBE = 10_000


def question(topic: str, i: int) -> str:
    return f"Question {i}: what is the {topic} value here?"


def ask(topic: str, i: int) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": question(topic, i)}],
            "seed": i}  # fmt: skip


async def difficulty(client: httpx.AsyncClient, topic: str) -> tuple[float, str]:
    body = (await client.post("/v1/chat/completions", json=ask(topic, PROBE))).json()
    return body["ponder"]["difficulty"], body["ponder"]["tier"]


async def test_the_prior_learns_from_traffic_and_survives_a_router_restart(
    tmp_path: Path,
) -> None:
    state = tmp_path / "prior.npz"
    first = create_app(config(**prior_config(state)), backend_factory=FakeFleet(script).factory)
    async with serve(first) as client:
        cold = await difficulty(client, HARD_TOPIC)
        for i in range(LEARN_BATCH):
            for topic in (HARD_TOPIC, "apple"):
                assert (await client.post("/v1/chat/completions",
                                          json=ask(topic, i))).status_code == 200
        prior = first.state.router.executor.prior
        assert prior is not None
        assert prior.warm
    assert state.exists()  # saved at shutdown
    learned = {topic: round(prior.predict(question(topic, PROBE)), 4)
               for topic in (HARD_TOPIC, "apple")}  # fmt: skip

    second = create_app(config(**prior_config(state)), backend_factory=FakeFleet(script).factory)
    restarted = second.state.router.executor.prior
    assert restarted is not None
    assert restarted.seen == prior.seen
    async with serve(second) as client:
        hard, easy = await difficulty(client, HARD_TOPIC), await difficulty(client, "apple")
        metrics = (await client.get("/metrics")).text

    assert (hard[0], easy[0]) == (learned[HARD_TOPIC], learned["apple"])
    assert hard[0] > easy[0]
    assert hard[1] != easy[1]  # the learned score moved the tier
    assert cold[0] != hard[0]  # cold, the fixed estimator scored it
    assert f'ponder_router_prior_requests_learned{{service="small"}} {prior.seen}.0' in metrics


async def test_a_router_without_a_state_path_learns_but_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_app(config(prior={"enabled": True, "warmRequests": 1}),
                     backend_factory=FakeFleet(script).factory)  # fmt: skip
    async with serve(app) as client:
        await client.post("/v1/chat/completions", json=ask("apple", 1))
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (a test's own directory)
    prior = app.state.router.executor.prior
    assert prior is not None
    prior.flush()
    assert prior.seen == 1


async def test_a_disabled_prior_leaves_the_fixed_estimator_in_charge(tmp_path: Path) -> None:
    app = create_app(config(**prior_config(tmp_path / "p.npz", enabled=False)),
                     backend_factory=FakeFleet(script).factory)  # fmt: skip
    async with serve(app):
        assert app.state.router.executor.prior is None
    assert not (tmp_path / "p.npz").exists()


async def test_a_reloaded_config_keeps_the_learned_prior_unless_its_size_changes(
    tmp_path: Path,
) -> None:
    state = tmp_path / "prior.npz"
    app = create_app(config(**prior_config(state)), backend_factory=FakeFleet(script).factory)
    router = app.state.router
    async with serve(app) as client:
        for i in range(LEARN_BATCH):
            await client.post("/v1/chat/completions", json=ask("apple", i))
        learned = router.executor.prior
        await router.apply_config(config(**prior_config(state, learningRate=0.2)))
        assert router.executor.prior is learned
        await router.apply_config(config(**prior_config(state, nFeatures=8192)))
        assert router.executor.prior is not learned
        assert router.executor.prior is not None
        assert router.executor.prior.seen == 0
        await router.apply_config(config(**prior_config(state, enabled=False)))
        assert router.executor.prior is None


def test_a_warm_prior_sets_the_demand_a_planned_request_adds(tmp_path: Path) -> None:
    app = create_app(config(**prior_config(tmp_path / "p.npz", warmRequests=LEARN_BATCH)),
                     backend_factory=FakeFleet(script).factory)  # fmt: skip
    executor = app.state.router.executor
    spec = RequestSpec(request_id="r", prompt="apple pie", problem="apple pie",
                       prompt_tokens=2, tenant="t")  # fmt: skip
    cold = executor.plan(spec)
    assert executor.prior is not None
    for i in range(LEARN_BATCH):
        executor.prior.learn(f"apple {i}", Observation(0.0, 0.0))  # every one stopped at once
    warm = executor.plan(spec)
    settings = config()

    def first_wave_only(budget: Budget) -> float:  # the demand with no sample past the first wave
        return expected_remaining_tokens(
            budget, settings.budgets.demand_model, samples_finished=0, running_samples=0,
            running_tokens=0.0, answer_tokens=settings.forcing.answer_tokens,
            extra_sample_ratio=0.0)  # fmt: skip

    assert cold.extra_sample_ratio is None
    assert warm.extra_sample_ratio == 0.0
    assert warm.demand_tokens() == pytest.approx(first_wave_only(warm.budget))
    assert cold.demand_tokens() > first_wave_only(cold.budget)  # the fixed ratio's extra
    hinted = executor.plan(dataclasses.replace(spec, difficulty_hint=0.9))
    assert hinted.estimate.score == 0.9  # the client's hint wins over the prior
    assert hinted.extra_sample_ratio is None


async def test_a_running_router_saves_its_prior_every_save_interval(tmp_path: Path) -> None:
    state = tmp_path / "prior.npz"
    app = create_app(config(**prior_config(state, saveIntervalSeconds=1)),
                     backend_factory=FakeFleet(script).factory)  # fmt: skip
    async with serve(app) as client:
        for i in range(LEARN_BATCH):
            await client.post("/v1/chat/completions", json=ask("apple", i))
        saved = 0
        for _ in range(80):  # the first save is due 1 s after start, the next 1 s later
            await asyncio.sleep(0.05)
            if state.exists():
                saved = load_prior(PriorConfig(n_features=4096), state).seen
                if saved == LEARN_BATCH:
                    break
        assert saved == LEARN_BATCH  # saved while running, not only at shutdown
