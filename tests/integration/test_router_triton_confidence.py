"""Low-confidence cancellation through a real Triton serving the stand-in LLM.

The stand-in (``ponder-sim-llm``, a simulator) streams a running ``cumulative_logprob``
with every response. A router whose confidence gate has learned a threshold above every
sample's running confidence keeps the request's first vote and cancels every other
sample on Triton while it streams: Triton releases them at once (its request counters)
and the router counts them (its report and ``ponder_router_low_confidence_cancels_total``).
"""

from __future__ import annotations

import asyncio

import pytest

from fixtures_triton import StartTriton, triton_counter
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.sim_llm.behaviour import SamplingParams as SimSamplingParams
from ponder_localstack.sim_llm.behaviour import SimModel
from ponder_localstack.triton import SimModelOptions
from ponder_router.admission import Admission
from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.budgets import BudgetPolicy, Strategy, Tier
from ponder_router.confidence import ConfidenceConfig
from ponder_router.endpoints import EndpointPool
from ponder_router.executor import Executor, RequestSpec
from ponder_router.metrics import RouterMetrics
from ponder_router.settings import RouterConfig
from ponder_router.triton import TritonBackend
from ponder_tools.data import shared_data_dir

pytestmark = pytest.mark.triton

PROBLEM = "What is the smallest positive integer $n$ such that $17n \\equiv 1234 \\pmod{7}?$"
SEED, SAMPLES = 1000, 8
GATE = ConfidenceConfig(cancel=True, percentile=50.0, window=200, min_window=50, min_tokens=5)


def cancelling_executor(address: str) -> Executor:
    tier = Tier(name="all", max_difficulty=1.0, max_tokens=4096, max_samples=SAMPLES,
                initial_samples=SAMPLES, strategy=Strategy.VOTE)  # fmt: skip
    config = RouterConfig.model_validate({
        "service": "svc", "model_name": "m", "triton_model": MODEL_NAME,
        "endpoints": (address,), "budgets": BudgetPolicy(tiers=(tier,)),
        "stopping": StopRule(kind=StopRuleKind.NEVER), "forcing": {"enabled": False},
        "confidence": GATE,
    })  # fmt: skip
    pool = EndpointPool(lambda a: TritonBackend(a, MODEL_NAME))
    pool.update(config.endpoints)
    ex = Executor(config, pool, Admission(config.admission), RouterMetrics("svc"))
    gate = ex.confidence_gate(config)
    for _ in range(GATE.min_window):
        gate.observe(0.999)  # recent traffic far more confident than the stand-in ever is
    return ex


async def test_a_low_confidence_sample_is_cancelled_on_triton(start_triton: StartTriton) -> None:
    triton = start_triton(SimModelOptions(token_latency_ms=20, max_concurrency=SAMPLES))
    model = SimModel.load(shared_data_dir())
    full = sum(len(model.complete(PROBLEM, SimSamplingParams(max_tokens=100_000,
                                                             seed=SEED + i)).tokens)
               for i in range(SAMPLES))  # fmt: skip
    ex = cancelling_executor(triton.grpc_url)
    released_before = triton_counter(triton, "nv_inference_request_success")
    spec = RequestSpec(request_id="r", prompt=PROBLEM, problem=PROBLEM, prompt_tokens=20,
                       tenant="t", seed=SEED, difficulty_hint=0.9)  # fmt: skip
    planned = ex.plan(spec)
    await planned.admit()
    try:
        result = await planned.execute()
    finally:
        await ex.pool.close()
    await asyncio.sleep(0.3)
    released = triton_counter(triton, "nv_inference_request_success") - released_before
    pending = triton_counter(triton, "nv_inference_pending_request_count")

    report = result.report
    assert report.samples.launched == SAMPLES
    assert report.samples.low_confidence >= 1
    assert report.votes[0].votes >= 1, "the first vote is never cancelled"
    assert ex.metrics.low_confidence_cancels._value.get() == report.samples.low_confidence
    assert result.completion_tokens < full
    # Triton released every sample right after the answer: the cancelled ones stopped there.
    assert released == SAMPLES
    assert pending == 0
