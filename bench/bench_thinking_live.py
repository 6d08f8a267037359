"""Benchmark: thinking budgets end to end through Triton — forcing and probe exits on vs off.

A SIMULATION through the real stack: one local Triton serves the stand-in LLM
(``ponder-sim-llm``) in its reasoning mode — trace lengths drawn from DeepSeek-R1's output
lengths (ServeGen) scaled by ``--length-scale`` (default 1/4, so a run takes about two
minutes on two cores: mean ~370 tokens, p90 ~880), answers that settle over the trace as
the Gemma-4-12B thinking traces' answers do (whose questions were chosen in three equal
cohorts, so overthinking is over-represented), an answer cue honoured mid-stream. The
router runs as its own process (``python -m ponder_router.main``), one per configuration,
all against that Triton, each sent the same MATH-500 problems (the stand-in knows their
answers) in the same order with the same seeds, over ``/v1/chat/completions`` with the
DeepSeek-R1 chat template:

- ``full``: no cap (16,384 tokens), forcing off — what the full traces cost and score;
- ``(a) cap``: the tier's ``maxTokens`` at ``--cap`` (default 2,048 x length scale: the
  default medium tier's cap, scaled as the traces are), forcing off — a cut-off sample
  abstains;
- ``(b) cap+forcing``: the same cap, forcing on — a cut-off sample answers at the cue;
- ``(c) +probes``: (b) with probe exits, agreement 2 and 3, every ``--intervals`` tokens.

One sample per request (tier strategy ``single``): a request's answer is its one sample's,
so accuracy and tokens compare per sample and no vote's early stopping mixes with the
probes' saving. Measured per configuration: accuracy (an abstention is wrong; the answer is
compared with ``ponder_router.answers.answers_equal``), the ``ponder`` report's
``tokens_used`` (probes included) per request and per answered request (all tokens over
the requests that got an answer), the router's ``/metrics`` (probes, probe exits, probe
tokens, forced answers) and Triton's ``vllm:generation_tokens_total`` (the tokens the
server generated, including what a cancelled sample made before it noticed). Against (b):
the sample tokens the probes saved (b's tokens minus (c)'s without its probe tokens), the
probes' own tokens over that saving (target <= 5 %), and the accuracy change with its
paired standard error. Probes use the default probe cue, the forcing cue followed by
`` \\boxed{``, and stop at ``}`` (vLLM's ``stop``, which the stand-in honours as vLLM
does: the brace is generated and counted, not returned), so a probe generates what is
inside the box and its closing brace: the stand-in splits it as a reasoning model's
tokenizer would (``behaviour.forced_answer_tokens`` less `` \\``, ``boxed``, ``{``, ``.``
and the end of sequence: 3 tokens for ``42``, 5 on average over MATH-500's answers); an
answer with braces inside (``\\frac{1}{2}``) stops at each inner ``}`` and the probe goes
on after it, within its ``maxTokens``; one cut by ``maxTokens`` before its closing brace
reads as none. Forced answers at the cap keep the whole forcing cue. The table also
shows the ratio were every probe to generate its ``maxTokens`` (an upper bound). Probes are
sent with the sample's seed; their prefill (prompt + trace + cue) is not counted, which a
prefix cache on the sample's own replica mostly serves. What one probe saves, over 20, is
how many tokens a real model's probe answer may take within the 5 % target.

    PYTHONPATH=operator:router:tools:localstack .venv/bin/python bench/bench_thinking_live.py \\
        [--problems 200] [--length-scale 0.25] [--intervals 32,64] [--name thinking_live]

Writes bench/results/<name>.json and .png. At DeepSeek-R1's own lengths (about 1.5 minutes):
``--length-scale 1 --intervals 128,256 --problems 100 --name thinking_live_r1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ponder_localstack.proc import Process, free_port, http_ok
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.sim_llm.behaviour import Problem, load_catalog
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_router.answers import answers_equal
from ponder_tools.data import shared_data_dir
from ponder_tools.evaluation.trajectories import GEMMA_CAVEAT

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SERVED = "standin-r1"
UNCAPPED_TOKENS = 16_384
PROBE_MAX_TOKENS = 16
OVERHEAD_TARGET = 0.05
CAVEAT = ("SIMULATION: the stand-in's answers settle as the " + GEMMA_CAVEAT
          + "; its trace lengths are DeepSeek-R1's, scaled")  # fmt: skip


@dataclass(frozen=True)
class Setup:
    """One router configuration under test."""

    name: str
    max_tokens: int
    forcing: bool
    interval_tokens: int | None = None
    agreement: int | None = None

    @property
    def probes(self) -> bool:
        return self.interval_tokens is not None

    def router_config(self, grpc_url: str) -> dict[str, Any]:
        tier = {"name": "all", "maxDifficulty": 1.0, "maxTokens": self.max_tokens,
                "maxSamples": 1, "initialSamples": 1, "strategy": "single"}  # fmt: skip
        probes: dict[str, Any] = {"enabled": False}
        if self.probes:
            probes = {"enabled": True, "intervalTokens": self.interval_tokens,
                      "agreement": self.agreement, "maxTokens": PROBE_MAX_TOKENS}  # fmt: skip
        return {
            "service": "bench-thinking", "modelName": SERVED, "tritonModel": MODEL_NAME,
            "endpoints": [grpc_url], "chat": {"preset": "deepseek-r1"},
            "budgets": {"tiers": [tier]}, "forcing": {"enabled": self.forcing},
            "probes": probes,
            "admission": {"maxQueueLength": 10_000, "maxConcurrentRequests": 1_000,
                          "maxConcurrencyPerTenant": 10_000, "requestTimeoutSeconds": 120,
                          "sampleTimeoutSeconds": 120},
        }  # fmt: skip


def setups(cap: int, intervals: list[int]) -> list[Setup]:
    probed = [Setup(f"(c) +probes i{i} a{a}", cap, True, i, a)
              for i in intervals for a in (2, 3)]  # fmt: skip
    return [Setup("full (no cap)", UNCAPPED_TOKENS, False), Setup("(a) cap", cap, False),
            Setup("(b) cap+forcing", cap, True), *probed]  # fmt: skip


# -- processes -------------------------------------------------------------------------


class Router:
    """``python -m ponder_router.main`` with one setup's config, on a free port."""

    def __init__(self, workdir: Path, index: str, config: dict[str, Any]) -> None:
        path = workdir / f"router-{index}.json"
        path.write_text(json.dumps(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = Process(f"router-{index}", [sys.executable, "-m", "ponder_router.main"],
                               workdir / f"router-{index}.log", env={
            "PONDER_ROUTER_CONFIG": str(path), "PONDER_ROUTER_PORT": self.url.rsplit(":")[-1],
            "PONDER_ROUTER_LOG_LEVEL": "warning"})  # fmt: skip
        self.process.start().wait_until(lambda: http_ok(self.url + "/readyz"), 60, "ready")

    def stop(self) -> None:
        self.process.stop()


def metric_sums(text: str) -> dict[str, float]:
    """Prometheus text: each metric's value summed over its label sets."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name = series.split("{")[0]
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums


async def fetch_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url) as response:
        return metric_sums(await response.text())


# -- one configuration ------------------------------------------------------------------


@dataclass
class Outcome:
    """What one request came back with."""

    answer: str | None
    correct: bool
    tokens_used: int
    forced: int
    probed: int
    truncated: int
    latency_seconds: float


@dataclass
class SetupRun:
    setup: Setup
    outcomes: list[Outcome] = field(default_factory=list)
    router_metrics: dict[str, float] = field(default_factory=dict)
    triton_generated_tokens: float = 0.0
    wall_seconds: float = 0.0
    retried: list[int] = field(default_factory=list)
    """Seeds of the requests sent again after a 5xx."""


RETRIES = 2
"""A request the router fails (5xx: Triton busy or briefly unreachable on a loaded machine)
is sent again, at most this many times, and counted (``retried``)."""


async def ask(session: aiohttp.ClientSession, url: str, problem: Problem, seed: int,
              retried: list[int]) -> Outcome:  # fmt: skip
    body = {"model": SERVED, "seed": seed,
            "messages": [{"role": "user", "content": problem.text}]}  # fmt: skip
    started = time.perf_counter()
    for attempt in range(RETRIES + 1):
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            if response.status == 200:
                report = (await response.json())["ponder"]
                break
            message = f"router answered {response.status}: {await response.text()}"
        if response.status < 500 or attempt == RETRIES:
            raise RuntimeError(message)
        retried.append(seed)
        await asyncio.sleep(0.5)
    answer = report.get("answer")
    samples = report["samples"]
    return Outcome(answer=answer,
                   correct=answer is not None and answers_equal(answer, problem.answer),
                   tokens_used=int(report["tokens_used"]), forced=samples["forced"],
                   probed=samples["probed"], truncated=samples["truncated"],
                   latency_seconds=time.perf_counter() - started)  # fmt: skip


async def run_setup(session: aiohttp.ClientSession, router: Router, triton: TritonServer,
                    setup: Setup, problems: list[Problem], concurrency: int,
                    ) -> SetupRun:  # fmt: skip
    """Send every problem (seed = its position) with ``concurrency`` in flight, in order."""
    run = SetupRun(setup, outcomes=[])
    before = (await fetch_metrics(session, triton.metrics_url)).get(
        "vllm:generation_tokens_total", 0.0)
    results: list[Outcome | None] = [None] * len(problems)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(problems):
            i, next_index = next_index, next_index + 1
            results[i] = await ask(session, router.url, problems[i], i, run.retried)

    started = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    run.wall_seconds = time.perf_counter() - started
    run.outcomes = [r for r in results if r is not None]
    await asyncio.sleep(0.5)  # cancelled samples notice within 20 ms; metrics every 50 ms
    run.router_metrics = await fetch_metrics(session, router.url + "/metrics")
    after = (await fetch_metrics(session, triton.metrics_url)).get(
        "vllm:generation_tokens_total", 0.0)
    run.triton_generated_tokens = after - before
    return run


# -- summary ----------------------------------------------------------------------------


def summarise(run: SetupRun, reference: SetupRun | None) -> dict[str, Any]:
    """Per-configuration figures; against ``reference`` ((b): cap with forcing) when given."""
    out = run.outcomes
    n = len(out)
    tokens = sum(o.tokens_used for o in out)
    answered = sum(o.answer is not None for o in out)
    m = run.router_metrics
    probe_tokens = m.get("ponder_router_probe_tokens_total", 0.0)
    probes = m.get("ponder_router_probes_total", 0.0)
    row: dict[str, Any] = {
        "name": run.setup.name, "max_tokens": run.setup.max_tokens,
        "forcing": run.setup.forcing, "interval_tokens": run.setup.interval_tokens,
        "agreement": run.setup.agreement, "requests": n, "answered": answered,
        "accuracy": sum(o.correct for o in out) / n,
        "tokens_per_request": tokens / n,
        "tokens_per_answered_request": tokens / max(answered, 1),
        "triton_generated_tokens_per_request": run.triton_generated_tokens / n,
        "forced": sum(o.forced for o in out), "truncated": sum(o.truncated for o in out),
        "probe_exits": sum(o.probed for o in out), "probes_sent": probes,
        "probe_tokens": probe_tokens, "probe_tokens_per_request": probe_tokens / n,
        "router_forced_answers": m.get("ponder_router_forced_answers_total", 0.0),
        "router_probe_exits": m.get("ponder_router_probe_exits_total", 0.0),
        "router_probe_unspent_tokens": m.get("ponder_router_probe_unspent_tokens_total", 0.0),
        "latency_mean_seconds": statistics.fmean(o.latency_seconds for o in out),
        "wall_seconds": run.wall_seconds, "retried": len(run.retried),
    }  # fmt: skip
    if reference is None or not run.setup.probes:
        return row
    ref = reference.outcomes
    saved = sum(r.tokens_used for r in ref) - (tokens - probe_tokens)  # sample tokens saved
    # Triton's count: what reached the router; what the stand-in had generated that the
    # router had not read yet when it cancelled (responses queued between them while the
    # router lags: 16 streams at 1 ms a token on shared cores); the probes cut short when
    # their sample ended (the router does not count them); and what a sample generated
    # after its cancel before the next check (at most 20 ms: test_triton_cancel_bound).
    served = reference.triton_generated_tokens - (run.triton_generated_tokens - probe_tokens)
    diffs = [int(o.correct) - int(r.correct) for o, r in zip(out, ref, strict=True)]
    row.update({
        "saved_tokens_per_request": saved / n,
        "triton_unread_tokens_per_probe_exit":
            (run.triton_generated_tokens - tokens) / max(sum(o.probed for o in out), 1),
        "triton_saved_tokens_per_request": served / n,
        "triton_probe_overhead": probe_tokens / max(served, 1.0),
        "net_saved_tokens_per_request": (saved - probe_tokens) / n,
        "saved_share": saved / sum(r.tokens_used for r in ref),
        "probe_overhead": probe_tokens / max(saved, 1.0),
        "probe_overhead_at_max_tokens": probes * PROBE_MAX_TOKENS / max(saved, 1.0),
        # What one probe saves; a probe answer up to 5 % of it keeps the target.
        "saved_tokens_per_probe": saved / max(probes, 1.0),
        "probe_answer_tokens_within_target": OVERHEAD_TARGET * saved / max(probes, 1.0),
        "accuracy_delta": statistics.fmean(diffs),
        "accuracy_delta_paired_se": statistics.stdev(diffs) / math.sqrt(n) if n > 1 else 0.0,
    })  # fmt: skip
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'configuration':24s} {'acc %':>6s} {'answered':>8s} {'tok/req':>8s} "
          f"{'tok/answ':>8s} {'triton':>7s} {'forced':>6s} {'probed':>6s} {'probes':>6s} "
          f"{'p.tok':>6s} {'saved':>6s} {'p/saved':>7s} {'@max':>6s} {'d acc':>6s} {'± se':>5s}")
    for r in rows:
        tail = ""
        if "probe_overhead" in r:
            tail = (f" {r['saved_tokens_per_request']:6.1f} {r['probe_overhead']:7.1%} "
                    f"{r['probe_overhead_at_max_tokens']:6.0%} {r['accuracy_delta'] * 100:+6.1f} "
                    f"{r['accuracy_delta_paired_se'] * 100:5.1f}")  # fmt: skip
        print(f"{r['name']:24s} {r['accuracy'] * 100:6.1f} {r['answered']:8d} "
              f"{r['tokens_per_request']:8.1f} {r['tokens_per_answered_request']:8.1f} "
              f"{r['triton_generated_tokens_per_request']:7.1f} {r['forced']:6d} "
              f"{r['probe_exits']:6d} {r['probes_sent']:6.0f} "
              f"{r['probe_tokens_per_request']:6.2f}" + tail)  # fmt: skip
    print("tok/req, tok/answ: the ponder report's tokens_used (probes included) per request and "
          "per answered request;\ntriton: tokens Triton generated per request; p.tok: probe "
          "tokens per request (router /metrics);\nsaved: sample tokens per request saved vs "
          "(b); p/saved: probe tokens / saved (target <= 5 %);\n@max: the same were each "
          "probe to generate its maxTokens; d acc: accuracy vs (b), points, paired SE.")


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if "probe_overhead" not in r:
            continue
        ok = r["probe_overhead"] <= OVERHEAD_TARGET
        lines.append(f"[{'PASS' if ok else 'MISS'}] {r['name']}: probes add "
                     f"{r['probe_overhead']:.1%} of the {r['saved_tokens_per_request']:.1f} "
                     f"tokens a request they save ({r['saved_share']:.0%} of (b)'s; "
                     f"{r['triton_probe_overhead']:.1%} of what Triton generated less), accuracy "
                     f"{r['accuracy_delta'] * 100:+.1f} ± {r['accuracy_delta_paired_se'] * 100:.1f}"
                     f" points vs (b); a probe saves {r['saved_tokens_per_probe']:.0f} tokens, "
                     f"so a real model's probe answer may take up to "
                     f"{r['probe_answer_tokens_within_target']:.1f} tokens; Triton generated "
                     f"{r['triton_unread_tokens_per_probe_exit']:.0f} tokens a probe exit more "
                     f"than the router read")  # fmt: skip
    return lines


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    for i, r in enumerate(rows):
        style = "gs" if r["interval_tokens"] else ("bo" if r["forcing"] else "rx")
        if r["max_tokens"] == UNCAPPED_TOKENS:
            style = "k*"
        left.plot(r["tokens_per_answered_request"], r["accuracy"] * 100, style)
        left.annotate(r["name"], (r["tokens_per_answered_request"], r["accuracy"] * 100),
                      fontsize=7, xytext=(4, 2 if i % 2 else -9),
                      textcoords="offset points")  # fmt: skip
    left.set_xlabel("tokens per answered request (ponder tokens_used, probes included)")
    left.set_ylabel("accuracy (%)")
    left.grid(alpha=0.3)
    probed = [r for r in rows if "probe_overhead" in r]
    x = range(len(probed))
    right.bar([i - 0.2 for i in x], [r["saved_tokens_per_request"] for r in probed], 0.4,
              label="sample tokens saved vs (b)")  # fmt: skip
    right.bar([i + 0.2 for i in x], [r["probe_tokens_per_request"] for r in probed], 0.4,
              label="probe tokens")  # fmt: skip
    for i, r in zip(x, probed, strict=True):
        right.annotate(f"{r['probe_overhead']:.1%}", (i + 0.2, r["probe_tokens_per_request"]),
                       ha="center", fontsize=8, xytext=(0, 2), textcoords="offset points")
    right.set_xticks(list(x), [r["name"].removeprefix("(c) +probes ") for r in probed])
    right.set_ylabel("tokens per request")
    right.set_title("probe tokens / tokens saved (target <= 5 %)", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 140), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main -------------------------------------------------------------------------------


TRITON_RESTARTS = 2
"""Triton 2.51 (r24.10, what ``hack/setup.sh`` installs) crashes on a race between a
stream's cancellation and its responses in its gRPC frontend (SIGSEGV, or SIGABRT on a
gRPC assertion: ``GRPC_CALL_ERROR_TOO_MANY_OPERATIONS``, ``ASSERTION FAILED: ops_``), even
when the model never reads its cancellation (``bench/triton_cancel_crash.py`` reproduces
it in seconds; triton-inference-server/server#7368, fixed by #7840 for r24.12, and
#8078), which probe exits, cancelling many streams, meet: a setting whose run it crashed
is run again from the start on a fresh server, and counted."""


def triton_crashed(triton: TritonServer) -> bool:
    """Triton exited, or caught a fatal signal: one that crashes in malloc ("double free or
    corruption") can hang in its signal handler, alive but answering nothing."""
    if not triton.alive:
        return True
    try:
        return "Signal (" in triton.log_path.read_text(errors="replace")
    except OSError:
        return False


def stop_triton(triton: TritonServer) -> None:
    """Stop Triton, and its python backend stub too: a stub outlives a crashed server."""
    triton.stop()
    if triton.process is not None and triton.process.popen is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(triton.process.popen.pid, signal.SIGKILL)


async def run(args: argparse.Namespace, workdir: Path) -> tuple[list[SetupRun], list[str]]:
    """Every setting's run, and the settings during whose run Triton crashed."""
    catalog = load_catalog(shared_data_dir())
    problems = list(catalog.problems)
    random.Random(0).shuffle(problems)
    problems = problems[:args.problems]
    model = SimModelOptions(token_latency_ms=args.token_ms, max_concurrency=4 * args.concurrency,
                            length_scale=args.length_scale, reasoning_mode=True)  # fmt: skip
    runs: list[SetupRun] = []
    crashes: list[str] = []
    triton = TritonServer(workdir / "triton", models=(model,)).start()
    try:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for index, setup in enumerate(setups(args.cap, args.intervals)):
                while True:
                    config = setup.router_config(triton.grpc_url)
                    router = Router(workdir, f"{index}-{len(crashes)}", config)
                    try:
                        result = await run_setup(session, router, triton, setup, problems,
                                                 args.concurrency)  # fmt: skip
                    except (RuntimeError, aiohttp.ClientError):
                        await asyncio.sleep(1.0)
                        if not triton_crashed(triton) or len(crashes) >= TRITON_RESTARTS:
                            raise
                        crashes.append(setup.name)
                        print(f"  Triton crashed during {setup.name} (log {triton.log_path}); "
                              "running it again on a fresh server", flush=True)
                        stop_triton(triton)
                        triton = TritonServer(workdir / f"triton-{len(crashes)}",
                                              models=(model,)).start()  # fmt: skip
                        continue
                    finally:
                        router.stop()
                    break
                runs.append(result)
                print(f"  {setup.name}: {result.wall_seconds:.1f} s", flush=True)
    finally:
        stop_triton(triton)
    return runs, crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=200, help="MATH-500 problems")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--token-ms", type=float, default=1.0, help="stand-in ms per token")
    parser.add_argument("--length-scale", type=float, default=0.25,
                        help="stand-in trace lengths relative to DeepSeek-R1's")
    parser.add_argument("--cap", type=int, default=None,
                        help="the tier's maxTokens (default 2048 x length scale)")
    parser.add_argument("--intervals", type=lambda s: [int(v) for v in s.split(",")],
                        default=[32, 64], help="probe intervals in tokens, comma-separated")
    parser.add_argument("--max-seconds", type=float, default=170.0,
                        help="the whole run stops (and fails) after this long")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="thinking_live", help="results file name, no suffix")
    args = parser.parse_args(argv)
    args.cap = args.cap or round(2048 * args.length_scale)
    started = time.perf_counter()
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-thinking-live-"))
    try:
        runs, crashes = asyncio.run(asyncio.wait_for(run(args, workdir), args.max_seconds))
    except TimeoutError:
        print(f"stopped: the run took over {args.max_seconds:.0f} s; ask for fewer "
              f"--problems or a smaller --length-scale (logs in {workdir})", file=sys.stderr)
        return 1
    except BaseException:
        print(f"failed; Triton's and the routers' logs are in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    reference = next(r for r in runs if r.setup.name.startswith("(b)"))
    rows = [summarise(r, reference) for r in runs]
    print(f"\n{CAVEAT} x {args.length_scale:g}; {args.problems} MATH-500 problems, one sample "
          f"a request, cap {args.cap} tokens, {args.token_ms:g} ms a token\n")
    print_table(rows)
    retried = {r["name"]: r["retried"] for r in rows if r["retried"]}
    print(f"requests sent again after a 5xx: {retried or 'none'}; settings run again after "
          f"Triton crashed (see TRITON_RESTARTS): {crashes or 'none'}")
    checks = verdict(rows)
    print("\n" + "\n".join(checks))
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.0f} s wall, load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    document = {"caveat": CAVEAT, "length_scale": args.length_scale, "cap_tokens": args.cap,
                "token_latency_ms": args.token_ms, "problems": args.problems,
                "concurrency": args.concurrency, "probe_max_tokens": PROBE_MAX_TOKENS,
                "overhead_target": OVERHEAD_TARGET, "results": rows, "verdict": checks,
                "rerun_after_triton_crash": crashes,
                "cpu_count": os.cpu_count(), "elapsed_seconds": round(elapsed, 1),
                "load_average": {"before": load_before, "after": os.getloadavg()}}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(document, indent=2) + "\n")
    title = (f"{CAVEAT} x {args.length_scale:g}; cap {args.cap}; "
             f"{args.problems} problems, one sample each")  # fmt: skip
    wrote = plot(rows, args.out / f"{args.name}.png", title)
    print(f"wrote {args.out / args.name}.json" + (" and .png" if wrote else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
