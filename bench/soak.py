"""Soak: the router at twice its sustainable rate for several minutes, on loopback.

The bar (from the issue): "Twice the router's sustainable rate for several minutes:
admitted requests keep their latency SLO, the excess gets 429 with Retry-After, the
router's own 5xx count is zero, RSS stays flat."

Setup: one Triton (CPU, loopback) serves the stand-in LLM (a simulator standing in for a
GPU LLM) with ``--slots`` generation slots at ``--token-ms`` per token; the router runs as
its own process (``ponder-router`` from this virtualenv, ``PONDER_ROUTER_CONFIG`` and
``PONDER_ROUTER_PORT``), as in a pod, with small explicit admission limits so that
overload is reachable: ``maxConcurrentRequests`` = the Triton slots,
``maxQueueLength`` = ``--queue``, a per-tenant limit that never binds, and a 15 s
request deadline. Requests are real MATH-500 problems (``math/math500_test.jsonl`` under
``$PONDER_DATA_DIR``, default ``shared/data`` beside the checkout), sent as chat
completions by the ``openai`` client (``AsyncOpenAI``, ``max_retries=0``), one sample of
at most ``--max-tokens`` tokens each (``ponder.max_samples: 1``), so every request costs
about the same.

1. Calibration (``--calibration-seconds``, default 40; the first 5 s are warm-up): a
   closed loop of ``maxConcurrentRequests`` callers, so every request finds a free slot
   and none waits in the router's queue. Its throughput is the sustainable rate; its
   p99 latency the baseline. The latency SLO for admitted requests is ``--slo-factor``
   x that p99, by default 1.5 x (1 + ``maxQueueLength / maxConcurrentRequests``), i.e.
   3 with the default limits: a bounded FIFO queue lets an admitted request wait behind
   at most ``maxQueueLength`` others, i.e. ``maxQueueLength / maxConcurrentRequests``
   service times, so an admitted request should take at most about twice the unloaded
   time here; the 1.5 is headroom for the CPU that client, router and Triton share.
2. Overload (``--minutes``, default 3): open-loop Poisson arrivals at ``--overload``
   (default 2) x the sustainable rate; the generator stops by itself at the end of the
   phase, then waits for the requests in flight (at most the client timeout). Latency is
   measured from each request's scheduled send time (no coordinated omission). Every
   request is counted once: sent = answered (200 with a completion) + rejected (429 or
   503 carrying a positive integer ``Retry-After``, checked on every one) + failed
   (anything else: other statuses, a 429/503 without ``Retry-After``, client timeouts,
   connection errors); a request in none of them is "unaccounted". The router's own
   5xx are 5xx answers other than an overload 503 with ``Retry-After``, counted by the
   client and from the router's ``/metrics`` (``ponder_router_requests_total`` outcomes
   ``error``/``upstream-error``/``timeout``, scraped before and after the phase, which
   also cross-check the client's counts: requests the router handled, answered and
   refused). The router's RSS is read from ``/proc/<pid>/status`` every
   ``--rss-interval`` seconds through both phases; "post-warmup" is its value
   ``min(30 s, phase / 4)`` into the overload phase, and "flat" means the end value is
   within ``--rss-bound`` (default 10 %, at least 8 MB) of it. The least-squares slope
   after the warm-up is reported too.

Targets (exit status 1 if one is missed): admitted p99 <= SLO; every 429/503 carries
``Retry-After``; the router's 5xx = 0 (client and metrics); failed = 0; unaccounted = 0
and the router's counts match the client's; RSS flat; the router still running at the
end, with no error or traceback in its log. The whole script stops itself
within ten minutes (``--minutes`` is capped so that start-up, calibration, overload and
drain fit); all processes are stopped on exit, on error, on Ctrl-C and on SIGTERM.

Usage: .venv/bin/python bench/soak.py [--minutes 3] [--calibration-seconds 40]
Writes bench/results/soak.json (every number, the RSS samples and the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ponder_localstack.proc import Process, free_port, http_ok
from ponder_localstack.triton import SimModelOptions, TritonServer
from ponder_tools.data import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DATA = shared_data_dir()
MATH500 = "math/math500_test.jsonl"
SERVED = "soak-model"
TRITON_MODEL = "sim-soak"
HARD_CAP_SECONDS = 600.0
"""The whole script, start-up to teardown, stays under ten minutes."""
RESERVED_SECONDS = 150.0
"""Start-up (Triton ~30-60 s on a busy machine), drain and teardown: kept out of
``--minutes`` and the calibration."""
WARMUP_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 15.0
"""The router's end-to-end deadline (``requestTimeoutSeconds``), queueing included."""
ROUTER_5XX_OUTCOMES = ("error", "upstream-error", "timeout")
"""``ponder_router_requests_total`` outcomes answered 500, 502 and 504 (no Retry-After)."""


# -- processes ----------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_router(workdir: Path, grpc_url: str, args: argparse.Namespace) -> tuple[Process, str]:
    """``ponder-router`` as a child process with the soak's admission limits."""
    port = free_port()
    config = {
        "service": "soak", "modelName": SERVED, "tritonModel": TRITON_MODEL,
        "endpoints": [grpc_url],
        "admission": {"maxConcurrentRequests": args.slots, "maxQueueLength": args.queue,
                      "maxConcurrencyPerTenant": 100_000,
                      "requestTimeoutSeconds": REQUEST_TIMEOUT_SECONDS},
    }  # fmt: skip
    path = workdir / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"PONDER_ROUTER_CONFIG": str(path), "PONDER_ROUTER_PORT": str(port),
           "PONDER_ROUTER_HOST": "127.0.0.1", "PONDER_ROUTER_LOG_LEVEL": "warning"}  # fmt: skip
    # The console script beside this interpreter: .venv/bin/ponder-router under `make soak`.
    argv = [str(Path(sys.executable).with_name("ponder-router"))]
    router = Process("ponder-router", argv, workdir / "router.log", env).start()
    url = f"http://127.0.0.1:{port}"
    try:
        router.wait_until(lambda: http_ok(f"{url}/readyz"), 30.0, "ready")
    except BaseException:
        router.stop()
        raise
    return router, url


# -- requests -----------------------------------------------------------------------------


def load_problems(seed: int) -> list[str]:
    path = DATA / MATH500
    problems = [json.loads(line)["problem"] for line in path.read_text().splitlines() if line]
    random.Random(seed).shuffle(problems)
    return problems


@dataclass
class Tally:
    """Every request of one phase, counted exactly once."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    """Answered requests, seconds from the scheduled send."""
    rejected: Counter[int] = field(default_factory=Counter)
    """Overload refusals with a Retry-After, by status."""
    failed: Counter[str] = field(default_factory=Counter)
    router_5xx: int = 0
    missing_retry_after: int = 0
    retry_after_seconds: Counter[int] = field(default_factory=Counter)
    send_slip: list[float] = field(default_factory=list)
    crashed: Counter[str] = field(default_factory=Counter)
    """Bugs in this script: requests that ended in none of the buckets."""

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def accounted(self) -> int:
        return self.answered + sum(self.rejected.values()) + sum(self.failed.values())


def _retry_after(headers: Mapping[str, str]) -> int | None:
    value = headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


async def send(client: openai.AsyncOpenAI, problem: str, max_tokens: int, due: float,
               tally: Tally) -> None:  # fmt: skip
    """One chat completion; its fate goes into ``tally``."""
    tally.sent += 1
    tally.send_slip.append(time.perf_counter() - due)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=SERVED, messages=[{"role": "user", "content": problem}],
            max_tokens=max_tokens, extra_body={"ponder": {"max_samples": 1}},
        )  # fmt: skip
        completion = raw.parse()
        if raw.status_code != 200 or not completion.choices[0].message.content:
            tally.failed[f"HTTP {raw.status_code} without a completion"] += 1
            return
        tally.latencies.append(time.perf_counter() - due)
    except openai.APIStatusError as exc:
        status, retry_after = exc.status_code, _retry_after(exc.response.headers)
        if status in (429, 503) and retry_after is not None:
            tally.rejected[status] += 1
            tally.retry_after_seconds[retry_after] += 1
            return
        if status in (429, 503):
            tally.missing_retry_after += 1
            tally.failed[f"HTTP {status} without Retry-After"] += 1
        else:
            tally.failed[f"HTTP {status}"] += 1
        if status >= 500:
            tally.router_5xx += 1
    except openai.APITimeoutError:
        tally.failed["client timeout"] += 1
    except openai.APIConnectionError as exc:
        tally.failed[f"connection error ({type(exc.__cause__).__name__})"] += 1
    except openai.APIResponseValidationError:
        tally.failed["malformed 200 answer"] += 1
    except asyncio.CancelledError:
        tally.failed["still running at the drain deadline"] += 1
        raise


def _task_done(tally: Tally, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        tally.crashed[type(task.exception()).__name__] += 1


async def closed_loop(client: openai.AsyncOpenAI, problems: Iterator[str], workers: int,
                      seconds: float, max_tokens: int) -> tuple[Tally, Tally]:  # fmt: skip
    """``workers`` back-to-back callers; the warm-up's tally and the measured one's."""
    warmup, measured = Tally(), Tally()
    start = time.perf_counter()
    end = start + seconds

    async def worker() -> None:
        while (now := time.perf_counter()) < end:
            tally = warmup if now - start < WARMUP_SECONDS else measured
            await send(client, next(problems), max_tokens, now, tally)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return warmup, measured


async def open_loop(client: openai.AsyncOpenAI, problems: Iterator[str], rate: float,
                    seconds: float, max_tokens: int, drain_seconds: float, seed: int,
                    ) -> tuple[Tally, float]:  # fmt: skip
    """Poisson arrivals at ``rate``/s for ``seconds``, then wait out the requests in
    flight (cancelled, and counted as failed, after ``drain_seconds``); the tally and the
    seconds the generator actually ran."""
    tally = Tally()
    rng = random.Random(seed)
    in_flight: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    end = start + seconds
    due = start + rng.expovariate(rate)
    while due < end:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(send(client, next(problems), max_tokens, due, tally))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        task.add_done_callback(lambda t: _task_done(tally, t))
        due += rng.expovariate(rate)
    generated = time.perf_counter() - start
    if in_flight:
        _, late = await asyncio.wait(set(in_flight), timeout=drain_seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    return tally, generated


def cycle(items: list[str]) -> Iterator[str]:
    while True:
        yield from items


# -- router metrics and memory ------------------------------------------------------------


async def scrape(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    """The router's counters: ``name{label=value,...}`` -> value."""
    response = await http.get(f"{url}/metrics")
    response.raise_for_status()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def metric_delta(before: dict[str, float], after: dict[str, float], name: str,
                 label: str | None = None) -> dict[str, float]:  # fmt: skip
    """Increase of ``name`` over the phase, summed by ``label`` (or in total under "")."""
    totals: dict[str, float] = {}
    for key, value in after.items():
        sample, _, labels = key.partition("{")
        if sample != name:
            continue
        pairs = dict(p.split("=", 1) for p in labels.rstrip("}").split(",") if p)
        group = pairs.get(label, "") if label else ""
        totals[group] = totals.get(group, 0.0) + value - before.get(key, 0.0)
    return {k: v for k, v in totals.items() if v}


@dataclass
class MemoryWatch:
    """The router's RSS every ``interval`` seconds, labelled with the phase."""

    pid: int
    interval: float
    samples: list[tuple[float, str, float]] = field(default_factory=list)
    phase: str = "calibration"
    started: float = field(default_factory=time.perf_counter)

    async def run(self) -> None:
        while True:
            self.samples.append((time.perf_counter() - self.started, self.phase,
                                 rss_mb(self.pid)))  # fmt: skip
            await asyncio.sleep(self.interval)


def rss_summary(samples: list[tuple[float, str, float]], warmup_seconds: float,
                bound: float) -> dict[str, Any]:  # fmt: skip
    overload = [(t, mb) for t, phase, mb in samples if phase == "overload"]
    t0 = overload[0][0]
    settled = [(t, mb) for t, mb in overload if t - t0 >= warmup_seconds] or overload[-1:]
    post_warmup, end = settled[0][1], overload[-1][1]
    allowed = max(post_warmup * bound, 8.0)
    slope = 0.0
    if len(settled) >= 3:
        times = np.array([t for t, _ in settled]) / 60
        slope = float(np.polyfit(times, np.array([mb for _, mb in settled]), 1)[0])
    return {"start_mb": round(samples[0][2], 1), "post_warmup_mb": round(post_warmup, 1),
            "max_mb": round(max(mb for _, _, mb in samples), 1), "end_mb": round(end, 1),
            "growth_mb": round(end - post_warmup, 1), "allowed_growth_mb": round(allowed, 1),
            "slope_mb_per_minute": round(slope, 2), "samples": len(samples),
            "flat": end - post_warmup <= allowed}  # fmt: skip


# -- the run ------------------------------------------------------------------------------


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) * 1000 if values else math.nan


def tally_summary(tally: Tally, seconds: float) -> dict[str, Any]:
    slip = tally.send_slip
    return {
        "sent": tally.sent, "answered": tally.answered,
        "rejected": sum(tally.rejected.values()),
        "rejected_by_status": {str(k): v for k, v in sorted(tally.rejected.items())},
        "failed": sum(tally.failed.values()), "failed_by_reason": dict(tally.failed),
        "unaccounted": tally.sent - tally.accounted, "crashed": dict(tally.crashed),
        "missing_retry_after": tally.missing_retry_after, "router_5xx": tally.router_5xx,
        "retry_after_seconds": {str(k): v for k, v in sorted(tally.retry_after_seconds.items())},
        "seconds": round(seconds, 2),
        "answered_per_second": round(tally.answered / seconds, 2) if seconds else 0.0,
        "p50_ms": round(percentile_ms(tally.latencies, 50), 1),
        "p99_ms": round(percentile_ms(tally.latencies, 99), 1),
        "max_ms": round(max(tally.latencies, default=math.nan) * 1000, 1),
        "mean_ms": round(statistics.fmean(tally.latencies) * 1000, 1) if tally.latencies
        else math.nan,
        "send_slip_p99_ms": round(percentile_ms(slip, 99), 1),
        "send_slip_max_ms": round(max(slip, default=0.0) * 1000, 1),
    }  # fmt: skip


async def run(args: argparse.Namespace, workdir: Path, deadline: float) -> dict[str, Any]:
    """Start Triton and the router, measure, and stop both whatever happens."""
    model = SimModelOptions(name=TRITON_MODEL, token_latency_ms=args.token_ms,
                            max_concurrency=args.slots, data_dir=DATA)  # fmt: skip
    with TritonServer(workdir / "triton", models=(model,)) as triton:
        router, url = start_router(workdir, triton.grpc_url, args)
        try:
            results = await measure(args, router, url, deadline)
        finally:
            router.stop()  # before any await: a second cancellation cannot skip it
        results["triton_startup_seconds"] = triton.startup_seconds
    log = router.log_path.read_text(errors="replace").splitlines()
    results["router_log_errors"] = [  # the router's format, and uvicorn's own
        line for line in log if line.startswith(("ERROR", "CRITICAL", "Traceback"))
        or " ERROR " in line or " CRITICAL " in line][:20]  # fmt: skip
    return results


async def measure(args: argparse.Namespace, router: Process, url: str, deadline: float,
                  ) -> dict[str, Any]:  # fmt: skip
    """The two phases against a running router; every number of the report."""
    problems = cycle(load_problems(args.seed))
    pid = router.popen.pid if router.popen else 0
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="soak", max_retries=0,
                                timeout=openai.Timeout(args.client_timeout, connect=5.0))
    http = httpx.AsyncClient(timeout=10.0)
    memory = MemoryWatch(pid, args.rss_interval)
    watcher = asyncio.ensure_future(memory.run())
    try:
        # Phase 1: a closed loop of maxConcurrentRequests callers.
        warm, calib = await closed_loop(client, problems, args.slots,
                                        args.calibration_seconds, args.max_tokens)
        measured_seconds = args.calibration_seconds - WARMUP_SECONDS
        calibration = tally_summary(calib, measured_seconds)
        calibration["warmup"] = tally_summary(warm, WARMUP_SECONDS)
        if not calib.latencies:
            raise RuntimeError(f"calibration got no answers: {calibration}")
        sustainable = calib.answered / measured_seconds
        slo_ms = args.slo_factor * calibration["p99_ms"]
        rate = args.overload * sustainable
        # Phase 2: open-loop Poisson arrivals at twice that, stopping by itself.
        drain = args.client_timeout + 5.0
        seconds = min(args.minutes * 60, deadline - time.monotonic() - drain - 30.0)
        if seconds < 30:
            raise RuntimeError("not enough of the ten minutes left for the overload phase")
        before = await scrape(http, url)
        memory.phase = "overload"
        tally, generated = await open_loop(client, problems, rate, seconds, args.max_tokens,
                                           drain, args.seed)  # fmt: skip
        memory.phase = "after"
        after = await scrape(http, url)  # every answered request was observed before it left
        memory.samples.append((time.perf_counter() - memory.started, "overload",
                               rss_mb(pid)))  # fmt: skip
        alive = router.alive
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await client.close()
        await http.aclose()
    overload = tally_summary(tally, generated)
    overload["offered_per_second"] = round(rate, 2)
    overload["sent_per_second"] = round(tally.sent / generated, 2)
    outcomes = metric_delta(before, after, "ponder_router_requests_total", "outcome")
    router_view = {
        "handled": metric_delta(before, after,
                                "ponder_router_request_duration_seconds_count").get("", 0.0),
        "outcomes": outcomes,
        "rejections": metric_delta(before, after, "ponder_router_rejections_total", "reason"),
        "upstream_failures": metric_delta(before, after,
                                          "ponder_router_upstream_failures_total").get("", 0.0),
        "router_5xx": sum(outcomes.get(o, 0.0) for o in ROUTER_5XX_OUTCOMES),
    }  # fmt: skip
    warmup_seconds = min(30.0, seconds / 4)
    return {
        "calibration": {**calibration, "sustainable_per_second": round(sustainable, 2),
                        "slo_ms": round(slo_ms, 1)},
        "overload": overload,
        "router_metrics": router_view,
        "rss": {**rss_summary(memory.samples, warmup_seconds, args.rss_bound),
                "warmup_seconds": warmup_seconds,
                "series": [(round(t, 1), phase, round(mb, 1)) for t, phase, mb in
                           memory.samples]},
        "router_alive_at_end": alive,
    }  # fmt: skip


async def guarded(args: argparse.Namespace, workdir: Path, deadline: float) -> dict[str, Any]:
    """``run`` under the ten-minute cap; SIGTERM cancels it like Ctrl-C does."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with asyncio.timeout(deadline - time.monotonic() - 20):
        return await run(args, workdir, deadline)


# -- the report ---------------------------------------------------------------------------


def checks(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    cal, over = results["calibration"], results["overload"]
    view, rss = results["router_metrics"], results["rss"]
    handled = int(view["handled"])
    ok = int(view["outcomes"].get("ok", 0))
    refused = int(view["outcomes"].get("rejected", 0) + view["outcomes"].get("queue-timeout", 0))
    return [
        ("admitted p99 latency", f"{over['p99_ms']:.0f} ms", f"<= {cal['slo_ms']:.0f} ms",
         over["p99_ms"] <= cal["slo_ms"]),
        ("429/503 without Retry-After", str(over["missing_retry_after"]), "0",
         over["missing_retry_after"] == 0),
        ("router 5xx (client view)", str(over["router_5xx"]), "0", over["router_5xx"] == 0),
        ("router 5xx (/metrics)", f"{view['router_5xx']:.0f}", "0", view["router_5xx"] == 0),
        ("failed requests", str(over["failed"]), "0", over["failed"] == 0),
        ("unaccounted requests", str(over["unaccounted"]), "0",
         over["unaccounted"] == 0 and not over["crashed"]),
        ("router handled / answered / refused", f"{handled}/{ok}/{refused}",
         f"{over['sent']}/{over['answered']}/{over['rejected']}",
         (handled, ok, refused) == (over["sent"], over["answered"], over["rejected"])),
        ("router RSS growth after warm-up", f"{rss['growth_mb']:+.1f} MB",
         f"<= {rss['allowed_growth_mb']:.0f} MB", rss["flat"]),
        ("router alive at the end", str(results["router_alive_at_end"]), "True",
         results["router_alive_at_end"]),
        ("errors in the router's log", str(len(results["router_log_errors"])), "0",
         not results["router_log_errors"]),
    ]  # fmt: skip


def report(results: dict[str, Any], args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    cal, over, rss = results["calibration"], results["overload"], results["rss"]
    view = results["router_metrics"]
    load = results["load_average"]
    print(f"\nSoak: {args.overload:g} x the router's sustainable rate for "
          f"{over['seconds'] / 60:.1f} min ({os.cpu_count()} cores shared by client, router "
          f"and Triton; 1-min load average {load['before'][0]:.1f} before, "
          f"{load['after'][0]:.1f} after)")
    print(f"limits: maxConcurrentRequests {args.slots} (= Triton slots), maxQueueLength "
          f"{args.queue}; {args.max_tokens}-token samples at {args.token_ms:g} ms/token\n")
    rows = [
        ("calibration (closed loop, "
         f"{args.slots} callers, {args.calibration_seconds - WARMUP_SECONDS:g} s)", ""),
        ("  sustainable rate", f"{cal['sustainable_per_second']:.2f} req/s"),
        ("  latency p50 / p99", f"{cal['p50_ms']:.0f} / {cal['p99_ms']:.0f} ms"),
        ("  latency SLO for admitted requests", f"{cal['slo_ms']:.0f} ms "
                                                f"({args.slo_factor:g} x p99)"),
        (f"overload (Poisson, {over['seconds']:.0f} s)", ""),
        ("  offered / sent rate", f"{over['offered_per_second']:.2f} / "
                                  f"{over['sent_per_second']:.2f} req/s"),
        ("  sent", str(over["sent"])),
        ("  answered (200)", f"{over['answered']} ({over['answered_per_second']:.2f} req/s)"),
        ("  rejected 429 / 503, with Retry-After",
         f"{over['rejected_by_status'].get('429', 0)} / "
         f"{over['rejected_by_status'].get('503', 0)}"),
        ("  failed", f"{over['failed']} {over['failed_by_reason'] or ''}".strip()),
        ("  unaccounted", str(over["unaccounted"])),
        ("  admitted latency p50 / p99 / max",
         f"{over['p50_ms']:.0f} / {over['p99_ms']:.0f} / {over['max_ms']:.0f} ms"),
        ("  Retry-After values (s: count)",
         ", ".join(f"{k}: {v}" for k, v in over["retry_after_seconds"].items()) or "-"),
        ("  router 5xx, client / /metrics",
         f"{over['router_5xx']} / {view['router_5xx']:.0f}"),
        ("  router outcomes (/metrics)",
         ", ".join(f"{k} {v:.0f}" for k, v in sorted(view["outcomes"].items()))),
        ("  send slip p99 / max", f"{over['send_slip_p99_ms']:.1f} / "
                                  f"{over['send_slip_max_ms']:.1f} ms"),
        ("router RSS start / post-warm-up / max / end",
         f"{rss['start_mb']:.1f} / {rss['post_warmup_mb']:.1f} / {rss['max_mb']:.1f} / "
         f"{rss['end_mb']:.1f} MB"),
        ("  slope after warm-up", f"{rss['slope_mb_per_minute']:+.2f} MB/min"),
    ]  # fmt: skip
    for label, value in rows:
        print(f"{label:46}{value}")
    results_checks = checks(results)
    print(f"\n{'check':38}{'measured':>16}{'target':>18}  result")
    for name, value, target, ok in results_checks:
        print(f"{name:38}{value:>16}{target:>18}  {'PASS' if ok else 'MISS'}")
    passed = all(ok for *_, ok in results_checks)
    summary = {
        "machine": machine(), "parameters": {k: str(v) if isinstance(v, Path) else v
                                             for k, v in vars(args).items()},
        **results,
        "targets": {name: {"measured": value, "target": target, "met": ok}
                    for name, value, target, ok in results_checks},
        "passed": passed,
    }  # fmt: skip
    return summary, passed


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                            "platform": platform.platform()}  # fmt: skip
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            info["cpu_model"] = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
    return info


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    deadline = started + HARD_CAP_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the overload")
    parser.add_argument("--calibration-seconds", type=float, default=40.0,
                        help="closed-loop calibration, warm-up included")
    parser.add_argument("--overload", type=float, default=2.0,
                        help="offered rate / sustainable rate")
    parser.add_argument("--slots", type=int, default=4,
                        help="Triton generation slots = the router's maxConcurrentRequests")
    parser.add_argument("--queue", type=int, default=4, help="the router's maxQueueLength")
    parser.add_argument("--token-ms", type=float, default=5.0, help="stand-in ms per token")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per sample")
    parser.add_argument("--slo-factor", type=float, default=None,
                        help="admitted-latency SLO / calibration p99; default "
                             "1.5 x (1 + queue / slots)")
    parser.add_argument("--rss-interval", type=float, default=2.0, help="seconds")
    parser.add_argument("--rss-bound", type=float, default=0.10,
                        help="allowed RSS growth after warm-up, share (at least 8 MB)")
    parser.add_argument("--client-timeout", type=float, default=20.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    budget = HARD_CAP_SECONDS - RESERVED_SECONDS - args.calibration_seconds
    if not 0 < args.minutes * 60 <= budget:
        parser.error(f"--minutes must be in (0, {budget / 60:.1f}]: the whole soak stays "
                     f"under {HARD_CAP_SECONDS / 60:.0f} minutes")  # fmt: skip
    if args.slo_factor is None:
        args.slo_factor = 1.5 * (1 + args.queue / args.slots)
    if args.calibration_seconds <= WARMUP_SECONDS + 5:
        parser.error(f"--calibration-seconds must exceed {WARMUP_SECONDS + 5:g}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        try:
            results = asyncio.run(guarded(args, Path(tmp), deadline))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("\ninterrupted: Triton and the router are stopped", file=sys.stderr)
            return 130
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    summary, passed = report(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}"
          f" in {results['wall_seconds']:.0f} s: {'all targets met' if passed else 'MISSED'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
