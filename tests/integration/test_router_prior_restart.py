"""The prompt prior survives a real router restart.

Real parts only: the ``ponder-router`` process and a real Triton serving the stand-in LLM.
The router learns its prior from the requests it answers, saves it when SIGTERM stops it,
and the next router process on the same config starts warm from that file: its first
request is already scored by what the first process learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures_router import StartRouterProcess
from fixtures_triton import StartTriton
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import SimModelOptions
from ponder_router.prior import PriorConfig
from ponder_router.prior_model import LEARN_BATCH
from ponder_router.prior_store import load_prior

pytestmark = pytest.mark.triton

SERVED = "sim-reasoner"
PRIOR = {"enabled": True, "nFeatures": 4096, "warmRequests": LEARN_BATCH}
PROBE = "Find the remainder when $2^{100}$ is divided by 7."


def router_config(endpoint: str, state: Path) -> dict[str, Any]:
    return {"service": "sim", "modelName": SERVED, "tritonModel": MODEL_NAME,
            "endpoints": [endpoint], "prior": {**PRIOR, "statePath": str(state)},
            "admission": {"requestTimeoutSeconds": 60}}  # fmt: skip


def ask(client: httpx.Client, url: str, question: str) -> dict[str, Any]:
    body = {"model": SERVED, "messages": [{"role": "user", "content": question}]}
    response = client.post(url + "/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    ponder: dict[str, Any] = response.json()["ponder"]
    return ponder


def test_the_prior_survives_a_router_restart(
    start_triton: StartTriton, start_router_process: StartRouterProcess, tmp_path: Path,
) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=1, max_concurrency=16))
    state = tmp_path / "state" / "prior.npz"
    first = start_router_process(router_config(triton.grpc_url, state))
    with httpx.Client(timeout=60) as client:
        for i in range(LEARN_BATCH):
            ask(client, first.url, f"What is {i} + {i * 7}? Then double it.")
    first.process.stop()  # SIGTERM: the router saves its prior on the way out
    assert state.exists()
    saved = load_prior(PriorConfig.model_validate(PRIOR), state)
    assert saved.seen == LEARN_BATCH
    assert saved.warm

    second = start_router_process(router_config(triton.grpc_url, state))
    with httpx.Client(timeout=60) as client:
        report = ask(client, second.url, PROBE)

    assert report["difficulty"] == round(saved.predict(PROBE), 4)
