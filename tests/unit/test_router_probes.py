"""The executor's probe exits and replica affinity, on ``FakeBackend`` replicas.

A probe is a request whose prompt ends with the probe cue; the scripts below answer it
by how far the probed sample had got (its ``stepN`` words), so each test decides when the
probes agree.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from ponder_router.triton import SampleParams
from test_router_executor import EASY, HARD, SINGLE, config, executor, run, spec
from test_router_fakes import FakeFleet, Record, Script
from virtual_time import VirtualTime

CUE = "\n</think>\n\nFinal answer: \\boxed{"
"""The default probe cue: the forcing cue with the answer's box opened."""
SAMPLE = Script(answer="9", tokens=200, finish_reason="stop")


PROBE = Script(tokens=0, output_tokens=3)


def probed_by(answer_at: Callable[[int], str | None], sample: Script = SAMPLE,
              probe: Script = PROBE) -> Any:  # fmt: skip
    """Samples run ``sample``; a probe after ``n`` reasoning words answers ``answer_at(n)``."""
    def script(prompt: str, params: SampleParams) -> Script:
        if prompt.endswith(CUE):
            return Script(**{**probe.__dict__, "answer": answer_at(prompt.count("step"))})
        return sample
    return script


def probes(**fields: Any) -> dict[str, Any]:
    return {"enabled": True, "intervalTokens": 20, "agreement": 2, **fields}


def split(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """(samples, probes)."""
    return ([r for r in records if not r.prompt.endswith(CUE)],
            [r for r in records if r.prompt.endswith(CUE)])  # fmt: skip


def probed_config(**fields: Any) -> Any:
    return config(chat={"preset": "deepseek-r1"}, probes=probes(**fields))


async def test_probes_fire_every_interval_and_agreeing_probes_stop_the_sample() -> None:
    fleet = FakeFleet(probed_by(lambda words: "7"))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()))  # fmt: skip
    result = await run(ex, spec(EASY))
    (sample,), sent = split(fleet.records)
    assert [p.prompt.count("step") for p in sent] == [20, 40]
    # Each probe is the sample so far plus the cue, on its replica, a few tokens, its seed.
    for probe in sent:
        assert probe.address == sample.address
        assert probe.prompt.removesuffix(CUE) == sample.prompt + "".join(
            sample.chunks[:probe.prompt.count("step")])
        assert probe.params.max_tokens == 16
        assert probe.params.stop == ("}",)
        assert probe.params.seed == sample.params.seed
        assert not probe.streamed
    # The sample was streamed, then cancelled on the replica once the probes agreed.
    assert sample.streamed
    assert sample.cancelled
    assert len(sample.chunks) < 60
    report = result.report
    assert (report.answer, report.samples.probed, report.samples.forced) == ("7", 1, 0)
    assert result.finish_reason == "stop"
    assert result.text.endswith(CUE + "\nThe answer is \\boxed{7}.")
    # The probes' tokens count as the sample's.
    assert result.completion_tokens == len(sample.chunks) + 2 * 3
    assert ex.metrics.probe_exits._value.get() == 1
    assert ex.metrics.probes._value.get() == 2
    assert ex.metrics.probe_tokens._value.get() == 6
    assert ex.metrics.probe_unspent_tokens._value.get() == 1024 - len(sample.chunks)


async def test_probes_that_change_their_answer_let_the_sample_finish() -> None:
    fleet = FakeFleet(probed_by(lambda words: str(words // 20 % 2)))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()))  # fmt: skip
    result = await run(ex, spec(EASY))
    (sample,), sent = split(fleet.records)
    assert sample.finished
    assert not sample.cancelled
    assert len(sent) >= 5
    assert (result.report.answer, result.report.samples.probed) == ("9", 0)
    # Finished probes count; one still running when the sample ended is cancelled.
    probe_tokens = ex.metrics.probe_tokens._value.get()
    assert 3 * (len(sent) - 1) <= probe_tokens <= 3 * len(sent)
    assert result.completion_tokens == len(sample.chunks) + probe_tokens
    assert ex.metrics.probe_exits._value.get() == 0


async def test_probes_below_the_confidence_floor_never_stop_the_sample() -> None:
    unsure = Script(tokens=0, output_tokens=3, cumulative_logprob=math.log(0.2))
    fleet = FakeFleet(probed_by(lambda words: "7", probe=unsure))
    cfg = config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                 probes=probes(confidenceFloor=0.5))  # fmt: skip
    result = await run(executor(fleet, cfg), spec(EASY))
    assert (result.report.answer, result.report.samples.probed) == ("9", 0)


async def test_with_probes_off_no_probe_is_sent_and_samples_are_fetched_whole() -> None:
    fleet = FakeFleet(probed_by(lambda words: "7"))
    result = await run(executor(fleet, config(chat={"preset": "deepseek-r1"})), spec(HARD))
    samples, sent = split(fleet.records)
    assert sent == []
    assert not any(r.streamed for r in samples)
    assert result.report.samples.probed == 0


async def test_every_sample_of_a_vote_can_settle_and_the_probed_answers_vote() -> None:
    fleet = FakeFleet(probed_by(lambda words: "7"))
    ex = executor(fleet, probed_config())
    result = await run(ex, spec(HARD))
    samples, _ = split(fleet.records)
    assert result.report.samples.probed == result.report.samples.completed == 4
    assert result.report.answer == "7"
    assert all(s.cancelled for s in samples)
    assert ex.metrics.probe_exits._value.get() == 4


async def test_a_request_cancelled_while_a_probe_runs_cancels_the_probe_too(
    virtual_time: VirtualTime,
) -> None:
    slow_probe = Script(tokens=0, token_seconds=10.0)
    fleet = FakeFleet(probed_by(lambda words: "7", probe=slow_probe,
                                sample=Script(tokens=500, token_seconds=0.01)))  # fmt: skip
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()), clock=virtual_time.time)  # fmt: skip
    task = asyncio.ensure_future(run(ex, spec(EASY)))
    await asyncio.sleep(1.0)
    _, sent = split(fleet.records)
    assert len(sent) == 1  # one probe at a time: the first is still running
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert all(r.cancelled for r in fleet.records)
    assert [e.running for e in ex.pool._endpoints.values()] == [0, 0]
    assert ex.inflight_samples == 0


async def test_a_sample_whose_probes_never_settle_is_still_forced_at_its_cap() -> None:
    capped = Script(answer=None, tokens=60, finish_reason="length")
    fleet = FakeFleet(probed_by(lambda words: str(words), sample=capped))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()))  # fmt: skip
    result = await run(ex, spec(EASY))
    # The forced continuation is the whole sample plus the cue: the last record.
    assert fleet.records[-1].prompt.count("step") == 60
    assert (result.report.samples.forced, result.report.samples.probed) == (1, 0)
    assert len({r.address for r in fleet.records}) == 1


async def test_a_streamed_sample_that_settles_streams_the_cue_and_the_probed_answer() -> None:
    fleet = FakeFleet(probed_by(lambda words: "7"))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()))  # fmt: skip
    tokens: list[str] = []

    class Sink:
        def token(self, text: str) -> None:
            tokens.append(text)

        def progress(self, report: dict[str, object]) -> None:
            raise AssertionError("a single sample streams its tokens")

    result = await run(ex, spec(EASY, streaming=True), Sink())
    assert result.report.samples.probed == 1
    assert "".join(tokens) == result.text
    assert tokens[-1] == CUE + "\nThe answer is \\boxed{7}."


async def test_a_probe_stopped_at_the_closing_brace_reads_the_answer_inside_the_box() -> None:
    inside = Script(tokens=0, answer=None, text="7", finish_reason="stop", output_tokens=2)
    fleet = FakeFleet(probed_by(lambda words: None, probe=inside))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()))  # fmt: skip
    result = await run(ex, spec(EASY))
    assert (result.report.answer, result.report.samples.probed) == ("7", 1)
    assert result.text.endswith(CUE + "7}")
    assert ex.metrics.probe_tokens._value.get() == 2 * 2


async def test_a_probe_stopped_inside_its_answer_goes_on_after_the_brace() -> None:
    # vLLM stops "\frac{1}{2}" at its first "}": the probe goes on after it, twice.
    pieces = {CUE: "\\frac{1", CUE + "\\frac{1}": "{2", CUE + "\\frac{1}{2}": ""}

    def script(prompt: str, params: SampleParams) -> Script:
        for cue, text in pieces.items():
            if prompt.endswith(cue):
                return Script(tokens=0, answer=None, text=text, finish_reason="stop",
                              output_tokens=2)  # fmt: skip
        return SAMPLE

    fleet = FakeFleet(script)
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()))  # fmt: skip
    result = await run(ex, spec(EASY))
    assert (result.report.answer, result.report.samples.probed) == ("\\frac{1}{2}", 1)
    assert result.text.endswith(CUE + "\\frac{1}{2}}")
    sent = [r for r in fleet.records if "Final answer" in r.prompt]
    assert [r.params.max_tokens for r in sent[:3]] == [16, 14, 12]  # one budget for the probe
    assert ex.metrics.probe_tokens._value.get() == 2 * 3 * 2


async def test_a_probe_in_pieces_is_as_sure_as_its_pieces_together() -> None:
    # Each piece 0.8 sure: the answer 0.8 ** 2 = 0.64, below a floor of 0.7.
    pieces = {CUE: "\\frac{1", CUE + "\\frac{1}": "{2}"}

    def script(prompt: str, params: SampleParams) -> Script:
        for cue, text in pieces.items():
            if prompt.endswith(cue):
                return Script(tokens=0, answer=None, text=text, finish_reason="stop",
                              output_tokens=2, cumulative_logprob=math.log(0.8))  # fmt: skip
        return SAMPLE

    for floor, probed in ((0.6, 1), (0.7, 0)):
        cfg = config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                     probes=probes(confidenceFloor=floor))  # fmt: skip
        result = await run(executor(FakeFleet(script), cfg), spec(EASY))
        assert result.report.samples.probed == probed


async def test_a_failed_probe_reads_as_no_answer_and_the_sample_goes_on() -> None:
    fleet = FakeFleet(probed_by(lambda words: "7", probe=Script(fail_after=0)))
    ex = executor(fleet, config(chat={"preset": "deepseek-r1"}, budgets=SINGLE,
                                probes=probes()))  # fmt: skip
    result = await run(ex, spec(EASY))
    (sample,), sent = split(fleet.records)
    assert sent
    assert all(p.failed for p in sent)
    assert sample.finished
    assert (result.report.answer, result.report.samples.probed) == ("9", 0)


# -- replica affinity ---------------------------------------------------------------------


async def test_a_requests_samples_and_probes_share_one_replica() -> None:
    fleet = FakeFleet(probed_by(lambda words: str(words)))  # never settles
    await run(executor(fleet, probed_config()), spec(HARD))
    samples, sent = split(fleet.records)
    assert len(samples) == 4
    assert sent
    assert len({r.address for r in fleet.records}) == 1


async def test_a_saturated_home_replica_spills_to_another() -> None:
    fleet = FakeFleet(lambda prompt, params: Script(answer="1", tokens=20))
    ex = executor(fleet, config(affinity={"maxSamplesPerReplica": 2}))
    await run(ex, spec(HARD))
    by_address = [sum(r.address == a for r in fleet.records) for a in ("a:1", "b:1")]
    assert sorted(by_address) == [2, 2]


async def test_concurrent_requests_still_spread_over_the_replicas() -> None:
    fleet = FakeFleet(lambda prompt, params: Script(answer="1", tokens=50, token_seconds=0.001))
    ex = executor(fleet)
    first, second = spec(HARD, request_id="one", seed=1000), spec(HARD, seed=5000)
    await asyncio.gather(run(ex, first), run(ex, second))
    homes = {seed: {r.address for r in fleet.records if (r.params.seed or 0) // 1000 == seed}
             for seed in (1, 5)}  # fmt: skip
    assert [len(h) for h in homes.values()] == [1, 1]
    assert homes[1] != homes[5]


async def test_without_affinity_a_requests_samples_spread_over_the_replicas() -> None:
    fleet = FakeFleet(lambda prompt, params: Script(answer="1", tokens=20))
    await run(executor(fleet, config(affinity={"enabled": False})), spec(HARD))
    assert {r.address for r in fleet.records} == {"a:1", "b:1"}
