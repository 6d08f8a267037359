"""The router's Triton client against a real Triton serving the stand-in LLM.

The stand-in (``ponder-sim-llm``) is a simulator standing in for a GPU LLM; it speaks
the vLLM backend's inputs and outputs. These tests pin down what the router relies on:
how a decoupled stream ends, that ``cancel()`` and the per-sample deadline stop the
model (a one-slot model serves the next request at once), how failures map, and that the
vLLM backend's additional outputs (``finish_reason``, ``cumulative_logprob``,
``num_output_tokens``) come back when the model declares them, where a sample cut off at
``max_tokens`` is counted truncated and casts no vote, while a model without them is
served as before; and that probe exits stop a settled sample on Triton and keep a
request's samples and probes on one replica until it is saturated.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import InferInput

from fixtures_triton import StartTriton, triton_counter
from ponder_localstack.proc import free_port
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.sim_llm.behaviour import SamplingParams as SimSamplingParams
from ponder_localstack.sim_llm.behaviour import SimModel, forced_answer_tokens
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_router.admission import Admission
from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.api import RequestResult
from ponder_router.budgets import BudgetPolicy, Strategy, Tier
from ponder_router.endpoints import EndpointPool
from ponder_router.errors import UpstreamError
from ponder_router.executor import Executor, RequestRun, RequestSpec
from ponder_router.metrics import RouterMetrics
from ponder_router.settings import RouterConfig
from ponder_router.triton import (
    EndpointUnavailableError,
    SampleParams,
    SampleTimeoutError,
    TritonBackend,
)
from ponder_tools.data import shared_data_dir

pytestmark = pytest.mark.triton

PROBLEM = "What is the smallest positive integer $n$ such that $17n \\equiv 1234 \\pmod{7}?$"


async def collect(backend: TritonBackend, params: SampleParams, *,
                  timeout_seconds: float = 30, stream: bool = True) -> list[str]:  # fmt: skip
    chunks = backend.stream_sample(PROBLEM, params, timeout_seconds=timeout_seconds,
                                   stream=stream)  # fmt: skip
    return [chunk async for chunk in chunks]


async def test_a_sample_streams_token_by_token_and_ends_with_its_answer(
    triton_server: TritonServer,
) -> None:
    backend = TritonBackend(triton_server.grpc_url, MODEL_NAME)
    try:
        chunks = await collect(backend, SampleParams(max_tokens=4096, seed=3))
    finally:
        await backend.close()
    assert len(chunks) > 5
    assert "".join(chunks).rstrip().endswith("}.")
    assert "\\boxed{" in chunks[-1]


async def test_a_sample_asked_for_without_streaming_arrives_whole_in_one_response(
    triton_server: TritonServer,
) -> None:
    backend = TritonBackend(triton_server.grpc_url, MODEL_NAME)
    try:
        streamed = await collect(backend, SampleParams(max_tokens=4096, seed=3))
        whole = await collect(backend, SampleParams(max_tokens=4096, seed=3), stream=False)
    finally:
        await backend.close()
    assert whole == ["".join(streamed)]


async def test_triton_marks_the_final_response_and_closes_a_half_closed_stream(
    triton_server: TritonServer,
) -> None:
    # The two end-of-sample signals the client relies on, read off the raw gRPC stream.
    def tensor(name: str, dtype: str, value: Any) -> InferInput:
        infer_input = InferInput(name, [1], dtype)
        infer_input.set_data_from_numpy(np.array([value], dtype=np.object_ if dtype == "BYTES"
                                                 else np.bool_))  # fmt: skip
        return infer_input

    async def one_request() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": MODEL_NAME, "inputs": [
            tensor("text_input", "BYTES", PROBLEM.encode()), tensor("stream", "BOOL", True),
            tensor("sampling_parameters", "BYTES", json.dumps({"max_tokens": 50}).encode()),
            tensor("exclude_input_in_output", "BOOL", True)]}  # fmt: skip

    async with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        finals = []
        async for result, error in client.stream_infer(one_request()):
            assert error is None
            params = result.get_response().parameters
            finals.append(params["triton_final_response"].bool_param)
    assert finals[-1] is True
    assert not any(finals[:-1])  # and after the final one, the server ended the stream


async def test_a_cancelled_sample_stops_generating_on_triton(start_triton: StartTriton) -> None:
    server = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=1))
    backend = TritonBackend(server.grpc_url, MODEL_NAME)
    try:
        stream = backend.stream_sample(PROBLEM, SampleParams(max_tokens=4096, seed=1),
                                       timeout_seconds=60)  # fmt: skip
        received = 0
        async for _ in stream:
            received += 1
            if received == 3:
                stream.cancel()
                break
        started = time.monotonic()
        follower = await collect(backend, SampleParams(max_tokens=2, seed=2))
        waited = time.monotonic() - started
    finally:
        await backend.close()
    # The cancelled sample had dozens of tokens (seconds) left; its one slot was free at once.
    assert len(follower) == 2
    assert waited < 1.0, f"the next sample waited {waited:.2f} s"


async def test_a_sample_past_its_deadline_times_out_and_stops_on_triton(
    start_triton: StartTriton,
) -> None:
    server = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=1))
    backend = TritonBackend(server.grpc_url, MODEL_NAME)
    try:
        with pytest.raises(SampleTimeoutError):
            await collect(backend, SampleParams(max_tokens=4096, seed=1), timeout_seconds=0.3)
        started = time.monotonic()
        await collect(backend, SampleParams(max_tokens=2, seed=2))
        waited = time.monotonic() - started
    finally:
        await backend.close()
    assert waited < 1.0, f"the next sample waited {waited:.2f} s"


async def test_an_unreachable_replica_is_reported_as_unavailable() -> None:
    backend = TritonBackend(f"127.0.0.1:{free_port()}", MODEL_NAME)
    try:
        with pytest.raises(EndpointUnavailableError):
            await collect(backend, SampleParams(max_tokens=5), timeout_seconds=5)
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("model", "params"),
    [("no-such-model", SampleParams(max_tokens=5)),
     (MODEL_NAME, SampleParams(max_tokens=5, top_p=0.0))],  # refused by the model
)  # fmt: skip
async def test_a_refused_sample_is_an_upstream_error_not_an_outage(
    triton_server: TritonServer, model: str, params: SampleParams
) -> None:
    backend = TritonBackend(triton_server.grpc_url, model)
    try:
        with pytest.raises(UpstreamError) as caught:
            await collect(backend, params)
    finally:
        await backend.close()
    assert not isinstance(caught.value, EndpointUnavailableError)


# -- the vLLM backend's additional outputs, end to end -----------------------------------

SEED = 1000
SAMPLES = 8


def sim_lengths(samples: int) -> list[int]:
    """Each sample's full length in tokens, from the stand-in's own (pure) behaviour."""
    model = SimModel.load(shared_data_dir())
    return [len(model.complete(PROBLEM, SimSamplingParams(max_tokens=100_000,
                                                          seed=SEED + i)).tokens)
            for i in range(samples)]  # fmt: skip


def voting_executor(address: str, model: str, max_tokens: int, *,
                    forcing: bool = False) -> Executor:  # fmt: skip
    """A router executor whose one tier runs 8 samples of ``max_tokens`` and never stops
    early, forcing an answer at the cap when ``forcing``."""
    tier = Tier(name="all", max_difficulty=1.0, max_tokens=max_tokens, max_samples=SAMPLES,
                initial_samples=SAMPLES, strategy=Strategy.VOTE)  # fmt: skip
    config = RouterConfig.model_validate({
        "service": "svc", "model_name": "m", "triton_model": model, "endpoints": (address,),
        "budgets": BudgetPolicy(tiers=(tier,)), "stopping": StopRule(kind=StopRuleKind.NEVER),
        "forcing": {"enabled": forcing}, "chat": {"preset": "deepseek-r1"},
    })  # fmt: skip
    pool = EndpointPool(lambda a: TritonBackend(a, model))
    pool.update(config.endpoints)
    return Executor(config, pool, Admission(config.admission), RouterMetrics("svc"))


async def run_request(ex: Executor) -> tuple[RequestRun, RequestResult]:
    spec = RequestSpec(request_id="r", prompt=PROBLEM, problem=PROBLEM, prompt_tokens=20,
                       tenant="t", seed=SEED, difficulty_hint=0.9)  # fmt: skip
    planned = ex.plan(spec)
    await planned.admit()
    try:
        return planned, await planned.execute()
    finally:
        await ex.pool.close()


async def test_a_sample_reports_its_finish_reason_logprob_and_token_count(
    triton_server: TritonServer,
) -> None:
    full = sim_lengths(1)[0]
    backend = TritonBackend(triton_server.grpc_url, MODEL_NAME)
    try:
        whole = backend.stream_sample(PROBLEM, SampleParams(max_tokens=4096, seed=SEED),
                                      timeout_seconds=30, stream=False)  # fmt: skip
        assert "\\boxed{" in "".join([c async for c in whole])
        cut = backend.stream_sample(PROBLEM, SampleParams(max_tokens=full - 2, seed=SEED),
                                    timeout_seconds=30)  # fmt: skip
        chunks = [c async for c in cut]
    finally:
        await backend.close()
    assert (whole.signals.finish_reason, whole.signals.output_tokens) == ("stop", full)
    assert whole.signals.cumulative_logprob is not None
    assert whole.signals.cumulative_logprob < 0
    # Streamed token by token: the counts of every response add up; "length" at the cap.
    assert (cut.signals.finish_reason, cut.signals.output_tokens) == ("length", full - 2)
    assert 1 < len(chunks) <= full - 2  # one response per token, unless coalesced
    assert cut.signals.cumulative_logprob is not None
    assert whole.signals.cumulative_logprob < cut.signals.cumulative_logprob < 0


async def test_with_forcing_off_a_sample_cut_off_at_max_tokens_is_truncated_and_casts_no_vote(
    start_triton: StartTriton,
) -> None:
    lengths = sim_lengths(SAMPLES)
    cap = sorted(lengths)[SAMPLES // 2]  # about half the samples run past it
    cut = {i for i, n in enumerate(lengths) if n > cap}
    assert 0 < len(cut) < SAMPLES
    server = start_triton(SimModelOptions(token_latency_ms=1),
                          SimModelOptions(name="plain", token_latency_ms=1,
                                          additional_outputs=False))  # fmt: skip

    ex = voting_executor(server.grpc_url, MODEL_NAME, cap)
    run, result = await run_request(ex)
    samples = sorted(run.samples, key=lambda s: s.index)
    assert {s.index for s in samples if s.truncated} == cut
    assert all(s.cumulative_logprob is not None for s in samples)
    assert [s.tokens for s in samples] == [min(n, cap) for n in lengths]  # the server's counts
    report = result.report
    assert report.samples.completed == SAMPLES
    assert report.samples.truncated == len(cut)
    assert sum(v.votes for v in report.votes) == SAMPLES - len(cut)
    assert all(f.answer is None for f in run.plan.finished if f.truncated)
    assert ex.metrics.truncated_samples._value.get() == len(cut)

    # A model without the additional outputs is served as before: no signals asked for
    # (Triton would refuse an undeclared input), the same votes from the text alone.
    ex = voting_executor(server.grpc_url, "plain", cap)
    plain_run, plain = await run_request(ex)
    assert all(s.finish_reason is None and s.cumulative_logprob is None
               for s in plain_run.samples)  # fmt: skip
    assert plain.report.samples.truncated == 0
    assert plain.report.abstentions == len(cut)
    assert plain.report.votes == report.votes


async def test_a_sample_cut_off_at_max_tokens_is_forced_to_answer_and_votes(
    triton_server: TritonServer,
) -> None:
    lengths = sim_lengths(SAMPLES)
    cap = sorted(lengths)[SAMPLES // 2]
    cut = {i for i, n in enumerate(lengths) if n > cap}
    ex = voting_executor(triton_server.grpc_url, MODEL_NAME, cap, forcing=True)
    run, result = await run_request(ex)
    samples = sorted(run.samples, key=lambda s: s.index)
    assert {s.index for s in samples if s.forced} == cut
    # Each forced sample continued its own trace with the cue; the stand-in answered in
    # the tokens a tokenizer gives its \boxed{} answer, which the sample's tokens include.
    forced_answers = [s.text.rsplit("\\boxed{", 1)[1].rsplit("}", 1)[0] if s.forced else ""
                      for s in samples]  # fmt: skip
    assert [s.tokens for s in samples] == [
        n if n <= cap else cap + len(forced_answer_tokens(answer))
        for n, answer in zip(lengths, forced_answers, strict=True)]
    assert all("\n</think>\n\nFinal answer: \\boxed{" in s.text for s in samples if s.forced)
    report = result.report
    assert (report.samples.forced, report.samples.truncated) == (len(cut), 0)
    assert report.abstentions == 0
    assert sum(v.votes for v in report.votes) == SAMPLES
    assert ex.metrics.forced_answers._value.get() == len(cut)
    assert ex.metrics.truncated_samples._value.get() == 0


# -- probe exits and replica affinity ---------------------------------------------------


class CountingBackend(TritonBackend):
    """A Triton backend that records the prompt of every stream it opens."""

    def __init__(self, address: str, model: str, opened: list[tuple[str, str]]) -> None:
        super().__init__(address, model)
        self.opened = opened

    def stream_sample(self, prompt: str, params: SampleParams, *, timeout_seconds: float,
                      stream: bool = True) -> Any:  # fmt: skip
        self.opened.append((self.address, prompt))
        return super().stream_sample(prompt, params, timeout_seconds=timeout_seconds,
                                     stream=stream)  # fmt: skip


def probing_executor(addresses: tuple[str, ...], samples: int, *, interval_tokens: int,
                     agreement: int, opened: list[tuple[str, str]],
                     affinity: dict[str, Any] | None = None) -> Executor:  # fmt: skip
    """A router executor whose one tier runs ``samples`` samples that never stop early
    but for their probes."""
    tier = Tier(name="all", max_difficulty=1.0, max_tokens=4096, max_samples=samples,
                initial_samples=samples,
                strategy=Strategy.VOTE if samples > 1 else Strategy.SINGLE)  # fmt: skip
    config = RouterConfig.model_validate({
        "service": "svc", "model_name": "m", "triton_model": MODEL_NAME,
        "endpoints": addresses, "budgets": BudgetPolicy(tiers=(tier,)),
        "stopping": StopRule(kind=StopRuleKind.NEVER), "chat": {"preset": "deepseek-r1"},
        "probes": {"enabled": True, "intervalTokens": interval_tokens, "agreement": agreement},
        "affinity": affinity or {},
    })  # fmt: skip
    pool = EndpointPool(lambda a: CountingBackend(a, MODEL_NAME, opened))
    pool.update(config.endpoints)
    return Executor(config, pool, Admission(config.admission), RouterMetrics("svc"))


PROBE_CUE = "\n</think>\n\nFinal answer: \\boxed{"
"""The default probe cue; a probe's prompt holds it (one going on after a brace inside
its answer holds it and what the answer had written)."""


async def test_a_settled_sample_is_stopped_on_triton_and_votes_with_its_probe(
    start_triton: StartTriton,
) -> None:
    full = sim_lengths(1)[0]
    server = start_triton(SimModelOptions(token_latency_ms=40, max_concurrency=2))
    opened: list[tuple[str, str]] = []
    # Agreement 1: the first probe settles the sample, a quarter into its trace.
    ex = probing_executor((server.grpc_url,), 1, interval_tokens=max(full // 4, 1),
                          agreement=1, opened=opened)  # fmt: skip
    run, result = await run_request(ex)
    (sample,) = run.samples
    assert sample.probed
    assert (result.report.samples.probed, result.report.samples.forced) == (1, 0)
    assert PROBE_CUE in sample.text  # the stand-in answered the probe's cue
    assert sample.probed_text is not None
    assert sample.probed_text.endswith("}")  # the brace the stop left out, put back
    assert sample.tokens < full  # stopped well before its end, its probe included
    assert ex.metrics.probe_exits._value.get() == 1
    probes = [prompt for _, prompt in opened if prompt.endswith(PROBE_CUE)]
    assert len(probes) == 1
    assert probes[0].startswith(PROBLEM)
    # The sample and its probe left both of the model's slots free: two more run at once
    # (the sample had seconds of tokens left).
    backend = TritonBackend(server.grpc_url, MODEL_NAME)
    try:
        started = time.monotonic()
        followers = await asyncio.gather(*(collect(backend, SampleParams(max_tokens=2, seed=s))
                                           for s in (7, 8)))  # fmt: skip
        waited = time.monotonic() - started
    finally:
        await backend.close()
    assert [len(f) for f in followers] == [2, 2]
    assert waited < 1.0, f"the next samples waited {waited:.2f} s"


async def test_a_requests_samples_and_probes_hit_one_replica_until_it_is_saturated(
    start_triton: StartTriton,
) -> None:
    servers = [start_triton(SimModelOptions(token_latency_ms=2, max_concurrency=16))
               for _ in range(2)]  # fmt: skip
    addresses = tuple(s.grpc_url for s in servers)
    full = min(sim_lengths(SAMPLES))

    def served() -> list[float]:
        return [triton_counter(s, "nv_inference_request_success") for s in servers]

    before = served()
    opened: list[tuple[str, str]] = []
    ex = probing_executor(addresses, SAMPLES, interval_tokens=max(full // 4, 1),
                          agreement=2, opened=opened)  # fmt: skip
    await run_request(ex)
    assert any(PROBE_CUE in prompt for _, prompt in opened)  # probes were sent
    assert len({address for address, _ in opened}) == 1
    # Triton's own counts agree: one replica served the request, the other nothing.
    await asyncio.sleep(0.3)
    delta = [after - was for after, was in zip(served(), before, strict=True)]
    assert sorted(delta)[0] == 0
    assert sorted(delta)[1] >= SAMPLES

    # A home replica with room for 4 samples: the request spills to the other one.
    opened.clear()
    ex = probing_executor(addresses, SAMPLES, interval_tokens=max(full // 4, 1),
                          agreement=2, opened=opened,
                          affinity={"maxSamplesPerReplica": 4})  # fmt: skip
    await run_request(ex)
    samples = [address for address, prompt in opened if PROBE_CUE not in prompt]
    assert {samples.count(a) for a in addresses} == {SAMPLES // 2}
