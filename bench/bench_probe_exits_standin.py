"""Benchmark: probe exits on the stand-in model, per sample, without Triton.

A SIMULATION, not a measurement of a real model: the stand-in (``ponder-sim-llm``)
answers an answer cue after a partial trace with the whole trace's answer with probability
(share of the trace) ** 0.5, else a wrong one, each probe drawn on its own; that rule is
an assumption, not calibrated from data. So this shows what the router's settle rule
(``ponder_router.probes``) does with such a model — tokens per sample (probes included)
and accuracy of a sample's vote, against the full traces — and says nothing about where
a real reasoning model's answers settle (replay real trajectories for that:
``ponder evaluate --builtin gemma4-12b-thinking``).

Probes are sent every ``interval`` tokens exactly (live, a probe still running when the
next is due delays it), each with the sample's seed, as the router sends them by default:
the cue ends inside ``\\boxed{`` and the probe stops at ``}`` (an answer with braces inside
goes on after it, within the probe's ``maxTokens``), read by ``probes.read_probe``; a sample
whose probes agree ``agreement`` times in a row stops at that probe and votes with its
answer.

Usage: PYTHONPATH=operator:router:tools:localstack .venv/bin/python \
    bench/bench_probe_exits_standin.py [--problems 150] [--seeds 4]
"""

from __future__ import annotations

import argparse
import random

from ponder_localstack.sim_llm.behaviour import SamplingParams, SimModel, load_catalog
from ponder_router.answers import answers_equal, extract_answer
from ponder_router.probes import ProbeConfig, ProbeReading, ProbeState, read_probe
from ponder_tools.data import shared_data_dir

CUE = "\n</think>\n\nFinal answer:"
PROBE_CUE = CUE + " \\boxed{"  # the default probe cue: the forcing cue, inside the box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    data = shared_data_dir()
    model = SimModel.load(data)
    problems = list(load_catalog(data).problems)
    random.Random(0).shuffle(problems)
    samples = [(p, seed, model.complete(p.text, SamplingParams(max_tokens=100_000, seed=seed)))
               for p in problems[:args.problems] for seed in range(args.seeds)]  # fmt: skip
    n = len(samples)
    full_tokens = sum(len(c.tokens) for _, _, c in samples)
    full_right = sum(c.answer is not None and answers_equal(c.answer, p.answer)
                     for p, _, c in samples)  # fmt: skip
    print(f"stand-in (simulated), {n} samples; full traces: {full_tokens / n:.1f} tokens "
          f"a sample, accuracy {full_right / n:.3f}")
    for interval in (4, 8, 16):
        for agreement in (2, 3, 4):
            config = ProbeConfig(enabled=True, interval_tokens=interval, agreement=agreement)
            used = probe_tokens = right = exits = 0
            for problem, seed, completion in samples:
                state = ProbeState(config)
                answer, tokens = completion.answer, len(completion.tokens)
                for at in range(interval, len(completion.tokens), interval):
                    partial = "".join(completion.tokens[:at])
                    answer_at, used_tokens = probe(model, problem.text + partial, seed,
                                                   config)
                    probe_tokens += used_tokens
                    if state.record(ProbeReading(answer_at)):
                        answer, tokens, exits = state.settled, at, exits + 1
                        break
                used += tokens
                right += answer is not None and answers_equal(answer, problem.answer)
            total = used + probe_tokens
            print(f"interval {interval:3d} agreement {agreement}: {total / n:6.1f} tokens a "
                  f"sample ({100 * (1 - total / full_tokens):5.1f} % saved, probes "
                  f"{probe_tokens / n:4.1f}), accuracy {right / n:.3f} "
                  f"({100 * (right - full_right) / n:+.1f} points), stopped {exits / n:.2f}")


def probe(model: SimModel, prefix: str, seed: int,
          config: ProbeConfig) -> tuple[str | None, int]:
    """One probe as the router sends it: its answer and the tokens it generated."""
    written, used, answer = PROBE_CUE, 0, None
    while used < config.max_tokens:
        piece = model.complete(prefix + written, SamplingParams(
            max_tokens=config.max_tokens - used, seed=seed, stop=config.stop))
        used += len(piece.tokens)
        stopped = piece.finish_reason == "stop"  # as the router reads it
        answer, written = read_probe(written + piece.text, extract_answer, config.stop,
                                     stopped=stopped)
        if answer is not None or not stopped:
            break
        written += config.stop[0]  # it stopped inside the answer: go on after it
    return answer, used


if __name__ == "__main__":
    main()
