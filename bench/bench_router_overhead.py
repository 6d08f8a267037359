"""Benchmark: what the router adds on top of calling Triton directly, side by side.

One Triton (CPU, loopback) serves two copies of the stand-in LLM (a simulator standing in
for a GPU LLM): ``sim-fast`` at 0 ms per token and ``sim-slow`` at a set per-token
latency. The router runs as its own process (``python -m ponder_router.main``), as in a
pod. Each phase sends the same single-sample work both ways — directly with
``tritonclient.grpc.aio`` (one ``ModelStreamInfer`` call per sample, asking for the same
thing the router asks Triton for: the whole sample for a JSON answer, token by token for
an SSE stream) and through the router's ``/v1/completions`` over HTTP (aiohttp client,
``ponder.max_samples: 1``):

1. latency at a fixed request rate (open loop, measured from each request's scheduled
   send time; requests alternate between the two paths): p50 / p99 direct and via the
   router, and the difference, for JSON answers; for streams also the time to the first
   token;
2. pass-through throughput on the 0 ms model: closed loop, N workers, alternating
   blocks of direct and routed work; requests per second both ways, and the router's
   CPU time per request;
3. the router's resident memory with 1,000 concurrent streaming requests on the slow
   model (bounded: each stream is ``--stream-tokens`` tokens long, then the run ends).

Targets: p50 added <= 1 ms, p99 added <= 5 ms, throughput >= 85 % of direct,
RSS <= 200 MB. Everything (client, router, Triton) shares this machine's cores, so the
router competes with Triton for CPU; the JSON records the core count.

Usage: .venv/bin/python bench/bench_router_overhead.py [--rate 40] [--seconds 15]
Writes bench/results/router_overhead.json and bench/results/router_overhead.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import tritonclient.grpc.aio as grpcclient
import yaml
from tritonclient.grpc import InferInput

from ponder_localstack.proc import free_port, http_ok
from ponder_localstack.triton import SimModelOptions, TritonServer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROMPT = "What is 12 times 7?"
SERVED = "bench-model"


# -- processes ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RouterProcess:
    """``python -m ponder_router.main`` with a config for one Triton model."""

    def __init__(self, workdir: Path, grpc_url: str, model: str) -> None:
        self.port = free_port()
        config = {
            "service": "bench", "modelName": SERVED, "tritonModel": model,
            "endpoints": [grpc_url],
            "admission": {"maxQueueLength": 10_000, "maxConcurrentRequests": 5_000,
                          "maxConcurrencyPerTenant": 100_000, "requestTimeoutSeconds": 300},
        }  # fmt: skip
        path = workdir / f"router-{model}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PONDER_ROUTER_CONFIG": str(path),
               "PONDER_ROUTER_PORT": str(self.port), "PONDER_ROUTER_LOG_LEVEL": "warning"}
        self.log = (workdir / f"router-{model}.log").open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "ponder_router.main"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while not http_ok(f"{self.url}/readyz"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the router did not start; see {self.log.name}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# -- the two ways to get one sample -------------------------------------------------------


def _tensor(name: str, value: Any, dtype: str) -> InferInput:
    tensor = InferInput(name, [1], dtype)
    tensor.set_data_from_numpy(np.array([value], dtype=np.object_ if dtype == "BYTES"
                                        else np.bool_))  # fmt: skip
    return tensor


class Direct:
    """One ``ModelStreamInfer`` call per sample, straight to Triton."""

    def __init__(self, grpc_url: str, model: str, max_tokens: int, *, stream: bool = False
                 ) -> None:  # fmt: skip
        self.client = grpcclient.InferenceServerClient(grpc_url)
        self.model = model
        self.max_tokens = max_tokens
        self.stream = stream

    async def __call__(self, seed: int) -> float:
        """Send one request; the time its first text arrived."""
        params = json.dumps({"max_tokens": self.max_tokens, "seed": seed}).encode()
        inputs = [_tensor("text_input", PROMPT.encode(), "BYTES"),
                  _tensor("stream", self.stream, "BOOL"),
                  _tensor("sampling_parameters", params, "BYTES"),
                  _tensor("exclude_input_in_output", True, "BOOL")]  # fmt: skip

        async def one() -> Any:
            yield {"model_name": self.model, "inputs": inputs}

        first = 0.0
        async for result, error in self.client.stream_infer(one()):
            if error is not None:
                raise RuntimeError(str(error))
            result.as_numpy("text_output")
            first = first or time.perf_counter()
        return first

    async def close(self) -> None:
        await self.client.close()


class ViaRouter:
    """``POST /v1/completions`` (single sample), JSON or SSE."""

    def __init__(self, url: str, max_tokens: int, *, stream: bool = False) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.url = url + "/v1/completions"
        self.max_tokens = max_tokens
        self.stream = stream

    async def __call__(self, seed: int) -> float:
        """Send one request; the time its first text arrived."""
        body = {"model": SERVED, "prompt": PROMPT, "max_tokens": self.max_tokens, "seed": seed,
                "stream": self.stream, "ponder": {"max_samples": 1}}  # fmt: skip
        async with self.session.post(self.url, json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"router answered {response.status}: {await response.text()}")
            if not self.stream:
                await response.read()
                return time.perf_counter()
            first = 0.0
            async for line in response.content:
                if not first and line.startswith(b"data: {") and b'"text":""' not in line:
                    first = time.perf_counter()
            return first

    async def close(self) -> None:
        await self.session.close()


Call = Callable[[int], Awaitable[float]]


# -- phases -------------------------------------------------------------------------------


async def fixed_rate(calls: tuple[Call, Call], rate: float, seconds: float,
                     ) -> list[tuple[list[float], list[float]]]:  # fmt: skip
    """Per call: latencies and times to first text (s), from each request's scheduled
    send time. Requests go out at ``rate``/s, alternating between the calls, so both
    see the same conditions on a shared machine."""
    results: list[tuple[list[float], list[float]]] = [([], []) for _ in calls]
    start = time.perf_counter()

    async def one(i: int, due: float) -> None:
        latencies, firsts = results[i % len(calls)]
        first = await calls[i % len(calls)](i)
        latencies.append(time.perf_counter() - due)
        firsts.append(first - due)

    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    return results


async def closed_loop(call: Call, workers: int, seconds: float) -> int:
    """Requests completed by ``workers`` back-to-back callers in ``seconds``."""
    done = 0
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < end:
            await call(w * 1_000_000 + i)
            done += 1
            i += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return done


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def streams_rss(router: RouterProcess, streams: int, tokens: int) -> dict[str, float]:
    """Peak RSS of the router while ``streams`` streaming requests are open at once."""
    via = ViaRouter(router.url, tokens, stream=True)
    idle = memory_mb(router.pid, "VmRSS")
    open_now = peak_open = 0
    peak_rss = idle
    cpu_before = cpu_seconds(router.pid)

    async def one(i: int) -> None:
        nonlocal open_now, peak_open
        open_now += 1
        peak_open = max(peak_open, open_now)
        try:
            await via(i)
        finally:
            open_now -= 1

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(one(i)) for i in range(streams)]
    while not all(t.done() for t in tasks):
        peak_rss = max(peak_rss, memory_mb(router.pid, "VmRSS"))
        await asyncio.sleep(0.2)
    await asyncio.gather(*tasks)
    await via.close()
    return {"streams": streams, "peak_open_streams": peak_open, "idle_rss_mb": round(idle, 1),
            "peak_rss_mb": round(peak_rss, 1), "vm_hwm_mb": round(memory_mb(router.pid,
                                                                             "VmHWM"), 1),
            "seconds": round(time.perf_counter() - started, 1),
            "router_cpu_seconds": round(cpu_seconds(router.pid) - cpu_before, 2)}  # fmt: skip


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    models = (SimModelOptions(name="sim-fast", token_latency_ms=0, max_concurrency=16),
              SimModelOptions(name="sim-slow", token_latency_ms=args.slow_token_ms,
                              max_concurrency=args.streams))  # fmt: skip
    with TritonServer(workdir / "triton", models=models) as triton:
        fast = RouterProcess(workdir, triton.grpc_url, "sim-fast")
        direct = Direct(triton.grpc_url, "sim-fast", args.max_tokens)
        via = ViaRouter(fast.url, args.max_tokens)
        direct_stream = Direct(triton.grpc_url, "sim-fast", args.max_tokens, stream=True)
        via_stream = ViaRouter(fast.url, args.max_tokens, stream=True)
        calls = {"json": (direct, via), "stream": (direct_stream, via_stream)}
        try:
            for pair in calls.values():  # warm up every path
                for call in pair:
                    await closed_loop(call, 4, 2.0)
            latency: dict[str, dict[str, Any]] = {}
            for mode, pair in calls.items():
                cpu = cpu_seconds(fast.pid)
                measured = await fixed_rate(pair, args.rate, args.seconds)
                router_cpu_ms = (cpu_seconds(fast.pid) - cpu) * 1000 / len(measured[1][0])
                for name, (values, firsts) in zip(("direct", "router"), measured, strict=True):
                    latency[f"{mode}_{name}"] = {
                        "p50_ms": percentile(values, 50) * 1000,
                        "p99_ms": percentile(values, 99) * 1000,
                        "mean_ms": statistics.fmean(values) * 1000,
                        "first_text_p50_ms": percentile(firsts, 50) * 1000,
                        "first_text_p99_ms": percentile(firsts, 99) * 1000,
                        "requests": len(values),
                    }  # fmt: skip
                latency[f"{mode}_router"]["router_cpu_ms_per_request"] = router_cpu_ms
            # Throughput: alternating blocks, so background load hits both paths alike.
            done = {"direct": 0, "router": 0}
            cpu_ms = 0.0
            block = args.seconds / args.rounds
            for _ in range(args.rounds):
                done["direct"] += await closed_loop(direct, args.workers, block)
                cpu = cpu_seconds(fast.pid)
                done["router"] += await closed_loop(via, args.workers, block)
                cpu_ms += (cpu_seconds(fast.pid) - cpu) * 1000
            throughput = {name: {"requests_per_second": n / args.seconds, "requests": n}
                          for name, n in done.items()}  # fmt: skip
            throughput["router"]["router_cpu_ms_per_request"] = cpu_ms / done["router"]
        finally:
            for pair in calls.values():
                for call in pair:
                    await call.close()
            fast.stop()
        slow = RouterProcess(workdir, triton.grpc_url, "sim-slow")
        try:
            memory = await streams_rss(slow, args.streams, args.stream_tokens)
        finally:
            slow.stop()
    return {"latency": latency, "throughput": throughput, "memory": memory}


def report(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    lat, thr, mem = results["latency"], results["throughput"], results["memory"]
    added = {
        "json_p50_ms": lat["json_router"]["p50_ms"] - lat["json_direct"]["p50_ms"],
        "json_p99_ms": lat["json_router"]["p99_ms"] - lat["json_direct"]["p99_ms"],
        "stream_p50_ms": lat["stream_router"]["p50_ms"] - lat["stream_direct"]["p50_ms"],
        "stream_p99_ms": lat["stream_router"]["p99_ms"] - lat["stream_direct"]["p99_ms"],
        "first_token_p50_ms": lat["stream_router"]["first_text_p50_ms"]
                              - lat["stream_direct"]["first_text_p50_ms"],
    }  # fmt: skip
    share = thr["router"]["requests_per_second"] / thr["direct"]["requests_per_second"]
    checks = [
        ("added latency p50", f"{added['json_p50_ms']:.2f} ms", "<= 1 ms",
         added["json_p50_ms"] <= 1.0),
        ("added latency p99", f"{added['json_p99_ms']:.2f} ms", "<= 5 ms",
         added["json_p99_ms"] <= 5.0),
        ("throughput vs direct", f"{share:.0%}", ">= 85 %", share >= 0.85),
        (f"router RSS, {mem['streams']} streams", f"{mem['peak_rss_mb']:.0f} MB", "<= 200 MB",
         mem["peak_rss_mb"] <= 200),
    ]  # fmt: skip
    rows = [
        (f"JSON p50 latency @ {args.rate:g}/s (ms)", "json", "p50_ms"),
        (f"JSON p99 latency @ {args.rate:g}/s (ms)", "json", "p99_ms"),
        (f"SSE p50 latency @ {args.rate:g}/s (ms)", "stream", "p50_ms"),
        (f"SSE p99 latency @ {args.rate:g}/s (ms)", "stream", "p99_ms"),
        ("SSE p50 first token (ms)", "stream", "first_text_p50_ms"),
    ]
    load = results["load_average"]
    print(f"\nRouter overhead vs direct Triton ({os.cpu_count()} cores shared by client, "
          f"router and Triton; {args.max_tokens}-token samples; 1-min load average "
          f"{load['before'][0]:.1f} before, {load['after'][0]:.1f} after)\n")
    print(f"{'':38}{'direct':>10}{'router':>10}{'added':>10}")
    for label, mode, key in rows:
        d, r = lat[f"{mode}_direct"][key], lat[f"{mode}_router"][key]
        print(f"{label:38}{d:>10.2f}{r:>10.2f}{r - d:>10.2f}")
    d, r = thr["direct"]["requests_per_second"], thr["router"]["requests_per_second"]
    print(f"{'throughput, 0 ms model (req/s)':38}{d:>10.1f}{r:>10.1f}{'':>10}")
    print(f"{'router CPU per request (ms)':38}{'':>10}"
          f"{thr['router']['router_cpu_ms_per_request']:>10.2f}")
    print(f"{'router RSS idle / ' + str(mem['streams']) + ' streams (MB)':38}"
          f"{mem['idle_rss_mb']:>10.0f}{mem['peak_rss_mb']:>10.0f}")
    print(f"\n{'check':38}{'measured':>10}{'target':>12}  result")
    for name, value, target, ok in checks:
        print(f"{name:38}{value:>10}{target:>12}  {'PASS' if ok else 'MISS'}")
    return {
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
        "parameters": {k: _display_path(v) if isinstance(v, Path) else v
                       for k, v in vars(args).items()},
        **results,
        "summary": {"added_ms": added, "throughput_share": share,
                    "peak_rss_mb": mem["peak_rss_mb"],
                    "targets_met": {name: ok for name, _, _, ok in checks}},
    }  # fmt: skip


def _display_path(path: Path) -> str:
    return str(path.resolve().relative_to(REPO)) if path.resolve().is_relative_to(REPO) \
        else str(path)  # fmt: skip


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, thr = results["latency"], results["throughput"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["json_direct", "json_router", "stream_direct", "stream_router"]
    x = np.arange(len(names))
    left.bar(x - 0.2, [lat[n]["p50_ms"] for n in names], 0.4, label="p50")
    left.bar(x + 0.2, [lat[n]["p99_ms"] for n in names], 0.4, label="p99")
    left.set_xticks(x, [n.replace("_", "\n") for n in names])
    left.set_ylabel("latency (ms)")
    left.set_title("Latency at a fixed rate")
    left.legend()
    right.bar(["direct", "router"], [thr[n]["requests_per_second"] for n in ("direct", "router")])
    right.set_ylabel("requests / s")
    right.set_title("Pass-through throughput, 0 ms model")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s, latency phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=16, help="closed-loop callers")
    parser.add_argument("--rounds", type=int, default=5, help="alternating throughput blocks")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per sample")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams")
    parser.add_argument("--stream-tokens", type=int, default=10, help="tokens per stream")
    parser.add_argument("--slow-token-ms", type=float, default=1000.0,
                        help="per-token latency of the model behind the streams")
    parser.add_argument("--out", type=Path, default=RESULTS / "router_overhead.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    summary = report(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
