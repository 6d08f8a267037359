"""Benchmark: ``ponder cost report`` over 30 days x 1,000 services at 1-minute resolution.

Writes every series a Ponder installation keeps for a service (the operator's
GPU-seconds, cost, idle GPU-seconds and ready GPUs; the router's demand gauge and its
requests, generated and budgeted tokens per tier: 11 series) as OpenMetrics, one file per
18-hour TSDB block, backfills each with ``promtool tsdb create-blocks-from openmetrics
--max-block-duration=18h`` (two at a time) and deletes it as soon as it is read, so the
disk holds the TSDB plus at most three block files (about 2 GB each). Lines are built as
fixed-width byte arrays with numpy (every label value of a family has one width), not
formatted one by one. Then it starts Debian's Prometheus over the TSDB (no compaction
during the timing) and times the report in each output format, each as its own process:
wall time and peak RSS (``VmHWM``) of the report, peak RSS of Prometheus; one more run
in this process splits the time into querying, computing and JSON.

Load model (deterministic): each service follows a daily sine with its own phase;
replicas follow the load; in the quietest hours the router reports no demand (the GPUs
still held there are idle); requests split 3:1 between tiers ``easy`` (300 tokens,
budget 1,024) and ``hard`` (2,000 tokens, budget 4 x 4,096).

Target: the report under 30 s.
Usage: .venv/bin/python bench/bench_cost_report.py [--services 1000] [--days 30]
Writes bench/results/cost_report.json; the TSDB is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml

from ponder_localstack.paths import debian_tool
from ponder_localstack.proc import LOOPBACK, Process, free_port, http_ok

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "cost_report.json"
START = datetime(2025, 1, 1, tzinfo=UTC)
BLOCK_SECONDS = 18 * 3600  # one of the TSDB's block ranges (2h x 3^k), so blocks align
FIRST_BLOCK = int(START.timestamp()) // BLOCK_SECONDS * BLOCK_SECONDS
STEP_SECONDS = 60
GPU_PRICES = {"H100": 10.9791, "A100": 3.6730, "H200": 10.5920}  # USD/GPU-h, gcp medians
TIERS = (("easy", 1.0, 300, 1024), ("hard", 1 / 3, 2000, 4 * 4096))  # share, tokens, budget
INT_DIGITS = 13
TARGET_SECONDS = 30.0
SERIES_PER_SERVICE = 5 + 3 * len(TIERS)

Int = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Fleet:
    """Per-service constants of the load model (arrays of length ``services``)."""

    services: int
    phase: npt.NDArray[np.float64]
    gpus_per_replica: Int
    max_replicas: Int
    requests_per_minute: npt.NDArray[np.float64]
    price_micro_usd_per_gpu_minute: Int
    gpu_type: list[str]

    @classmethod
    def build(cls, services: int) -> Fleet:
        rng = np.random.default_rng(7)
        types = list(GPU_PRICES)
        gpu_type = [types[i % len(types)] for i in range(services)]
        price = np.array([round(GPU_PRICES[t] * 1e6 / 60) for t in gpu_type], dtype=np.int64)
        return cls(services, rng.random(services), rng.choice([1, 2, 4, 8], services),
                   rng.integers(1, 5, services), rng.uniform(5, 60, services), price, gpu_type)


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


def operator_prefix(fleet: Fleet, name: str) -> list[str]:
    return [name + _labels((
        ("namespace", f"ns-{i % 50:02d}"), ("service", f"svc-{i:04d}"),
        ("gpu_type", fleet.gpu_type[i]), ("team", f"team-{i % 20:02d}"),
        ("department", f"dept-{i % 5}"), ("env", ("prod", "stag", "test")[i % 3]),
        ("owner", f"own-{i % 40:02d}"), ("app", f"app-{i % 30:02d}"))) + " "
        for i in range(fleet.services)]


def router_prefix(fleet: Fleet, name: str, tier: str | None, outcome: bool) -> list[str]:
    out = []
    for i in range(fleet.services):
        pairs = [("namespace", f"ns-{i % 50:02d}"), ("service", f"svc-{i:04d}")]
        if tier is not None:
            pairs.append(("tier", tier))
        if outcome:
            pairs.append(("outcome", "ok"))
        out.append(name + _labels(pairs) + " ")
    return out


def _as_bytes(prefixes: Sequence[str]) -> Bytes:
    widths = {len(p) for p in prefixes}
    assert len(widths) == 1, f"prefixes of a family must share one width, got {widths}"
    return np.frombuffer("".join(prefixes).encode(), dtype=np.uint8).reshape(
        len(prefixes), widths.pop())


def _digits(values: Int, width: int) -> Bytes:
    """``values`` (any shape) as zero-padded ASCII digits, a new last axis of ``width``."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[..., None] // powers) % 10 + 48).astype(np.uint8)


def family_bytes(prefixes: Bytes, values: Int, stamps: Bytes, decimals: int = 0) -> memoryview:
    """Lines ``<prefix><value> <timestamp>\\n`` for every series and sample, series-major.

    ``values`` are integers (n_series x n_samples); with ``decimals`` they are printed
    as fixed-point numbers (micro-units with 6).
    """
    n, m = values.shape
    p = prefixes.shape[1]
    if decimals:
        width = INT_DIGITS + 1 + decimals
        text = np.empty((n, m, width), dtype=np.uint8)
        text[..., :INT_DIGITS] = _digits(values // 10 ** decimals, INT_DIGITS)
        text[..., INT_DIGITS] = ord(".")
        text[..., INT_DIGITS + 1:] = _digits(values % 10 ** decimals, decimals)
    else:
        width = INT_DIGITS
        text = _digits(values, INT_DIGITS)
    line = p + width + stamps.shape[1]
    buf = np.empty((n, m, line), dtype=np.uint8)
    buf[:, :, :p] = prefixes[:, None, :]
    buf[:, :, p:p + width] = text
    buf[:, :, p + width:] = stamps[None, :, :]
    return memoryview(buf).cast("B")


class Generator:
    """Counter state across blocks; ``block(k)`` is the OpenMetrics text of block ``k``."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        n = fleet.services
        self.prefix = {
            "gpu": _as_bytes(operator_prefix(fleet, "ponder_gpu_seconds_total")),
            "cost": _as_bytes(operator_prefix(fleet, "ponder_cost_total")),
            "idle": _as_bytes(operator_prefix(fleet, "ponder_idle_gpu_seconds_total")),
            "ready": _as_bytes(operator_prefix(fleet, "ponder_ready_gpus")),
            "demand": _as_bytes(router_prefix(fleet, "ponder_router_demand_tokens", None,
                                              False)),
        }
        for tier, *_ in TIERS:
            for family, metric, outcome in (
                    ("requests", "ponder_router_requests_total", True),
                    ("used", "ponder_router_used_tokens_total", False),
                    ("budget", "ponder_router_budget_tokens_total", False)):
                self.prefix[f"{family}:{tier}"] = _as_bytes(
                    router_prefix(fleet, metric, tier, outcome))
        self.totals = {name: np.zeros(n, dtype=np.int64) for name in self.prefix}

    def _counter(self, name: str, increments: Int) -> Int:
        values = self.totals[name][:, None] + np.cumsum(increments, axis=1)
        self.totals[name] = values[:, -1].copy()
        return values

    def block(self, index: int) -> Iterator[bytes | memoryview]:
        fleet = self.fleet
        first = FIRST_BLOCK + index * BLOCK_SECONDS
        stamps_s = np.arange(first, first + BLOCK_SECONDS, STEP_SECONDS, dtype=np.int64)
        stamps = np.concatenate([np.full((len(stamps_s), 1), ord(" "), dtype=np.uint8),
                                 _digits(stamps_s, 10),
                                 np.full((len(stamps_s), 1), ord("\n"), dtype=np.uint8)],
                                axis=1)
        day = (stamps_s[None, :] - int(START.timestamp())) / 86400.0
        load = 0.5 + 0.5 * np.sin(2 * np.pi * (day + fleet.phase[:, None]))
        replicas = np.rint(load * fleet.max_replicas[:, None]).astype(np.int64)
        ready = replicas * fleet.gpus_per_replica[:, None]
        busy = load >= 0.15  # the quiet hours: no demand, GPUs may still be held
        demand = np.where(busy, np.rint(load * 20_000), 0).astype(np.int64)
        gpu_inc = ready * STEP_SECONDS
        cost_inc = ready * fleet.price_micro_usd_per_gpu_minute[:, None]
        yield b"# TYPE ponder_gpu_seconds counter\n"
        yield family_bytes(self.prefix["gpu"], self._counter("gpu", gpu_inc), stamps)
        yield b"# TYPE ponder_cost counter\n"
        yield family_bytes(self.prefix["cost"], self._counter("cost", cost_inc), stamps, 6)
        yield b"# TYPE ponder_idle_gpu_seconds counter\n"
        yield family_bytes(self.prefix["idle"],
                           self._counter("idle", np.where(busy, 0, gpu_inc)), stamps)
        yield b"# TYPE ponder_ready_gpus gauge\n"
        yield family_bytes(self.prefix["ready"], ready, stamps)
        yield b"# TYPE ponder_router_demand_tokens gauge\n"
        yield family_bytes(self.prefix["demand"], demand, stamps)
        base = np.where(busy, load * fleet.requests_per_minute[:, None], 0.0)
        per_family: dict[str, list[tuple[str, Int]]] = {"requests": [], "used": [],
                                                         "budget": []}
        for tier, share, tokens, budget in TIERS:
            requests = np.rint(base * share).astype(np.int64)
            per_family["requests"].append((tier, requests))
            per_family["used"].append((tier, requests * tokens))
            per_family["budget"].append((tier, requests * budget))
        for family, metric in (("requests", "ponder_router_requests"),
                               ("used", "ponder_router_used_tokens"),
                               ("budget", "ponder_router_budget_tokens")):
            yield f"# TYPE {metric} counter\n".encode()
            for tier, increments in per_family[family]:
                name = f"{family}:{tier}"
                yield family_bytes(self.prefix[name], self._counter(name, increments), stamps)


def backfill(fleet: Fleet, blocks: int, data_dir: Path, scratch: Path,
             jobs: int = 2) -> dict[str, float]:
    """Generate and backfill ``blocks`` two-hour blocks, ``jobs`` promtool runs at a time.

    Each block's file is deleted as soon as promtool has read it, so the scratch folder
    holds at most ``jobs + 1`` files.
    """
    promtool = str(debian_tool("promtool"))
    generator = Generator(fleet)
    generate_seconds = 0.0
    om_bytes = 0
    running: list[tuple[subprocess.Popen[bytes], Path]] = []
    started = time.perf_counter()

    def finish(job: tuple[subprocess.Popen[bytes], Path]) -> None:
        process, path = job
        _, err = process.communicate()
        path.unlink()
        if process.returncode != 0:
            raise RuntimeError(f"promtool failed on {path.name}: {err.decode()[-2000:]}")

    try:
        for index in range(blocks):
            t0 = time.perf_counter()
            path = scratch / f"block-{index:04d}.om"
            with path.open("wb") as f:
                for chunk in generator.block(index):
                    f.write(chunk)
                f.write(b"# EOF\n")
            om_bytes += path.stat().st_size
            generate_seconds += time.perf_counter() - t0
            while len(running) >= jobs:
                finish(running.pop(0))
            running.append((subprocess.Popen(
                [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                 f"--max-block-duration={BLOCK_SECONDS}s", str(path), str(data_dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path))
            if index % 5 == 4 or index == blocks - 1:
                print(f"  generated {index + 1}/{blocks} blocks "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        while running:
            finish(running.pop(0))
    finally:
        for process, _ in running:
            process.kill()
            process.wait()
    return {"generate_seconds": generate_seconds,
            "backfill_seconds": time.perf_counter() - started,
            "openmetrics_gb": om_bytes / 1e9}


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``); 0 once it has exited."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_prometheus(state: Path) -> tuple[Process, str]:
    config = state / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"},
                                      "scrape_configs": []}))
    port = free_port()
    process = Process("prometheus", [
        str(debian_tool("prometheus")), f"--config.file={config}",
        f"--storage.tsdb.path={state / 'data'}", f"--web.listen-address={LOOPBACK}:{port}",
        "--storage.tsdb.retention.time=3650d",
        # keep promtool's two-hour blocks: no compaction running during the timing
        "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h",
        "--log.level=warn"], state / "prometheus.log").start()
    url = f"http://{LOOPBACK}:{port}"
    process.wait_until(lambda: http_ok(f"{url}/-/ready"), 600, "ready")
    return process, url


def time_report(url: str, period: Sequence[str], fmt: str, output: Path) -> dict[str, float]:
    """Run the report as its own process; its wall seconds and peak RSS.

    The peak is the process's own high-water mark (``VmHWM``), polled while it runs: the
    ``ru_maxrss`` of a child counts the RSS of the parent that forked it.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "ponder_tools.cli", "cost", "report", "--prometheus", url,
         *period, "--format", fmt, "--output", str(output), "--group-by", "namespace,service",
         "--timeout", "600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while process.poll() is None:
        with contextlib.suppress(OSError, ValueError):  # it may exit between the two
            peak = max(peak, peak_rss_mb(process.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    assert process.stderr is not None
    err = process.stderr.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"report failed: {err.strip()}")
    return {"seconds": seconds, "peak_rss_mb": peak, "output_mb": output.stat().st_size / 1e6}


def breakdown(url: str, start: datetime, end: datetime) -> dict[str, float]:
    """Seconds spent querying, computing and formatting, measured in this process."""
    from ponder_tools.costreport.cli import report_document
    from ponder_tools.costreport.model import compute_report, resolve_period
    from ponder_tools.costreport.query import fetch_inputs

    period = resolve_period(now=end, start=f"{start:%Y-%m-%dT%H:%M:%SZ}",
                            end=f"{end:%Y-%m-%dT%H:%M:%SZ}")
    t0 = time.perf_counter()
    inputs = fetch_inputs(url, period, timeout_seconds=600)
    t1 = time.perf_counter()
    report = compute_report(inputs, ("namespace", "service"))
    t2 = time.perf_counter()
    json.dumps(report_document(report))
    t3 = time.perf_counter()
    return {"query_seconds": t1 - t0, "compute_seconds": t2 - t1, "json_seconds": t3 - t2,
            "step_seconds": period.step_seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--formats", default="json,table,focus,html")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the TSDB goes (default: a temporary folder, removed)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the TSDB afterwards (a later run with --workdir reuses it)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    fleet = Fleet.build(args.services)
    end = START + timedelta(days=args.days)
    blocks = (int(end.timestamp()) - FIRST_BLOCK) // BLOCK_SECONDS + 1  # up to the end
    period = ["--start", f"{START:%Y-%m-%dT%H:%M:%SZ}", "--end", f"{end:%Y-%m-%dT%H:%M:%SZ}"]
    samples = fleet.services * SERIES_PER_SERVICE * (blocks * BLOCK_SECONDS // STEP_SECONDS)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ponder-cost-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="openmetrics-", dir=work))
    load_before = os.getloadavg()[0]
    prometheus: Process | None = None
    try:
        data = work / "data"
        setup_file = work / "setup.json"
        if data.is_dir() and any(data.iterdir()) and setup_file.exists():
            print(f"reusing the TSDB in {data}", file=sys.stderr)
            setup: dict[str, float] = json.loads(setup_file.read_text())
        else:
            shutil.rmtree(data, ignore_errors=True)
            print(f"generating {args.days} days x {args.services} services at 1-minute "
                  f"resolution: {samples / 1e6:.0f}M samples in {blocks} blocks of 18 h",
                  file=sys.stderr)
            setup = backfill(fleet, blocks, data, scratch)
            setup_file.write_text(json.dumps(setup))
        setup["tsdb_gb"] = directory_bytes(data) / 1e9
        t0 = time.perf_counter()
        prometheus, url = start_prometheus(work)
        setup["prometheus_start_seconds"] = time.perf_counter() - t0
        runs: list[dict[str, float | str]] = []
        for fmt in args.formats.split(","):
            result = time_report(url, period, fmt, work / f"report.{fmt}")
            runs.append({"format": fmt, **result})
            print(f"  {fmt}: {result['seconds']:.1f} s", file=sys.stderr)
        phases = breakdown(url, START, end)
        assert prometheus.popen is not None
        prometheus_rss = peak_rss_mb(prometheus.popen.pid)
        report_json = work / "report.json"
        total = json.loads(report_json.read_text())["total"] if report_json.exists() else {}
    finally:
        if prometheus is not None:
            prometheus.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    print(f"\nponder cost report: {args.days} days x {args.services} services, 1-minute "
          f"samples ({samples / 1e6:.0f}M, {SERIES_PER_SERVICE} series a service), "
          f"step {phases['step_seconds'] / 3600:g} h")
    print(f"{'format':<8} {'seconds':>8} {'peak RSS MB':>12} {'output MB':>10}")
    for run in runs:
        print(f"{run['format']:<8} {float(run['seconds']):>8.1f} "
              f"{float(run['peak_rss_mb']):>12.0f} {float(run['output_mb']):>10.1f}")
    print(f"in-process: querying {phases['query_seconds']:.1f} s, computing "
          f"{phases['compute_seconds']:.1f} s, JSON {phases['json_seconds']:.1f} s")
    print(f"Prometheus peak RSS {prometheus_rss:.0f} MB, TSDB {setup['tsdb_gb']:.2f} GB"
          + (f", backfill {setup['backfill_seconds']:.0f} s (generating "
             f"{setup['generate_seconds']:.0f} s, {setup['openmetrics_gb']:.1f} GB of "
             f"OpenMetrics)" if "backfill_seconds" in setup else ""))
    print(f"load average {load_before:.1f} before, {load_after:.1f} after "
          f"({os.cpu_count()} CPUs, shared)")
    worst = max(float(r["seconds"]) for r in runs)
    print(f"target: report under {TARGET_SECONDS:.0f} s -> "
          f"{'met' if worst < TARGET_SECONDS else 'MISSED'} (slowest {worst:.1f} s)")
    version = subprocess.run([str(debian_tool("prometheus")), "--version"],
                             capture_output=True, text=True, check=False).stdout
    document = {
        "benchmark": "cost_report",
        "command": "python bench/bench_cost_report.py " + " ".join(argv or sys.argv[1:]),
        "services": args.services, "days": args.days, "sample_interval_seconds": STEP_SECONDS,
        "series_per_service": SERIES_PER_SERVICE, "samples": samples, "blocks": blocks,
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": load_after,
                    "prometheus": version.splitlines()[0] if version else "unknown"},
        "setup": setup, "prometheus_peak_rss_mb": prometheus_rss, "runs": runs,
        "in_process": phases, "target_seconds": TARGET_SECONDS,
        "target_met": worst < TARGET_SECONDS, "report_total": total,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
