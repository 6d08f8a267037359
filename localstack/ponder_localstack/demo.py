"""``make demo``: the whole system, closed loop, on the local stack — then torn down.

1. Starts the real parts on loopback and prints how long each took to become healthy: the
   Kubernetes control plane with fake GPU nodes (KWOK), Prometheus, and the pod runner that
   runs the cluster's Triton and router pods as real local processes (Triton serves
   ``ponder-sim-llm``, a simulator standing in for a GPU LLM).
2. ``helm install``s the chart, runs the operator (a local process authenticated as the
   chart's ServiceAccount: KWOK runs no containers), creates the ``sim-llm`` ConfigMap
   that holds the stand-in's model repository and ``kubectl apply``s
   ``examples/demo.yaml``.
3. Replays a slice of the Azure LLM inference trace (conversation) — its busiest stretch,
   compressed in time and thinned so it fits this machine — with MATH-500 problems through
   the ``openai`` client, against the router pod.
4. Shows live: requests per second, queue and demand, replicas desired/ready, budgets by
   tier, early stops, accuracy so far, cost per hour; then ``kubectl get rsvc``, the scaling
   Events, ``ponder cost report`` for the run, and a PNG plot of replicas and demand.
5. Stops every process it started (also on Ctrl-C or a port already taken); ``KEEP=1``
   leaves the stack up and prints how to reach it.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from ponder_localstack.cluster import Cluster, NodeSpec, ToolError
from ponder_localstack.paths import MissingComponentError
from ponder_localstack.proc import Process, StartupError, free_port, http_ok
from ponder_localstack.prometheus import Prometheus, file_discovery_job
from ponder_localstack.runner import PodRunner
from ponder_localstack.triton import SimModelOptions, repository_configmap
from ponder_tools.data import shared_data_dir

REPO = Path(__file__).resolve().parents[2]
DATA = shared_data_dir()
MODEL_CONFIGMAP = "sim-llm"  # examples/demo.yaml's model repository
NODES = (NodeSpec("gpu-h100-0", gpus=2), NodeSpec("gpu-h100-1", gpus=2),
         NodeSpec("cpu-0", gpus=0))
RELEASE, RELEASE_NAMESPACE = "ponder", "ponder-system"
MODEL = SimModelOptions(token_latency_ms=8.0, max_concurrency=6)
"""The stand-in LLM every Triton pod serves."""
SERVICE_MANIFEST = REPO / "examples" / "demo.yaml"


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class DemoOptions:
    """How much traffic, for how long."""

    replay_seconds: float = 150.0   # the trace slice, compressed to this long
    window_minutes: int = 12        # how much of the trace to replay
    mean_rate_rps: float = 1.6      # thinning target (this machine has two cores)
    settle_seconds: float = 60.0    # after the replay: time to scale back in
    seed: int = 7
    out_dir: Path = REPO / "demo-output"


@dataclass
class Sample:
    t: float
    rps: float
    queue: float
    demand: float
    desired: int
    ready: int
    hourly_cost: float


@dataclass
class Tally:
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    tiers: Counter[str] = field(default_factory=Counter)
    early_stops: int = 0
    correct: int = 0
    samples_launched: int = 0
    tokens_used: int = 0
    answers: dict[int, tuple[float, int, int]] = field(default_factory=dict)
    """Per answered request (by arrival index): seconds to the reply, tokens, samples."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Economics:
    """The run's answers per dollar, and what fixed maj@N would have cost for them."""

    answered: int
    correct: int
    cost_usd: float
    fixed_cost_usd: dict[int, float]
    """maj@N's cost for the same answered requests: N samples each at the run's cost per
    sample launched (an estimate: it assumes samples as long, and the pool as busy per
    sample, as in the run)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    @property
    def usd_per_1k_correct(self) -> float:
        return 1000.0 * self.cost_usd / self.correct if self.correct else float("inf")


FIXED_SAMPLES = (1, 5, 16)


def economics(tally: Tally, cost_usd: float) -> Economics:
    """``Economics`` of the answered requests in ``tally`` at the run's ``cost_usd``."""
    answered = tally.outcomes["200"]
    per_sample = cost_usd / tally.samples_launched if tally.samples_launched else 0.0
    fixed = {n: per_sample * n * answered for n in FIXED_SAMPLES}
    return Economics(answered, tally.correct, cost_usd, fixed)


def trace_slice(options: DemoOptions) -> list[float]:
    """Arrival offsets (s): the busiest-varying window of the Azure conv trace, compressed."""
    with (DATA / "traces" / "AzureLLMInferenceTrace_conv.csv").open() as f:
        stamps = [datetime.fromisoformat(row["TIMESTAMP"][:26]) for row in csv.DictReader(f)]
    t0 = stamps[0]
    seconds = [(s - t0).total_seconds() for s in stamps]
    per_minute = Counter(int(s // 60) for s in seconds)
    minutes = max(per_minute) + 1
    span = options.window_minutes

    def spread(start: int) -> int:
        counts = [per_minute.get(m, 0) for m in range(start, start + span)]
        return max(counts) - min(counts)

    start = max(range(minutes - span), key=spread)
    window = [s - start * 60 for s in seconds if start * 60 <= s < (start + span) * 60]
    compress = span * 60 / options.replay_seconds
    keep = options.mean_rate_rps * options.replay_seconds / len(window)
    rng = random.Random(options.seed)
    return [s / compress for s in window if rng.random() < keep]


def problems(seed: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (DATA / "math" / "math500_test.jsonl").open()]
    random.Random(seed).shuffle(rows)
    return rows


def replay(url: str, arrivals: list[float], tally: Tally, seed: int) -> list[threading.Thread]:
    """Open-loop load: each arrival is a thread sending one request at its time."""
    from openai import APIStatusError, OpenAI

    from ponder_router.answers import answers_equal

    client = OpenAI(base_url=f"{url}/v1", api_key="demo", max_retries=0, timeout=120)
    rows = problems(seed)
    start = time.monotonic()

    def one(i: int, at: float) -> None:
        time.sleep(max(0.0, start + at - time.monotonic()))
        row = rows[i % len(rows)]
        with tally.lock:
            tally.sent += 1
        sent_at = time.monotonic()
        try:
            reply = client.chat.completions.create(
                model="ponder-sim-llm", messages=[{"role": "user", "content": row["problem"]}])
        except APIStatusError as exc:
            with tally.lock:
                tally.outcomes[str(exc.status_code)] += 1
            return
        except Exception as exc:  # a transport failure: counted, never lost
            with tally.lock:
                tally.outcomes[type(exc).__name__] += 1
            return
        latency = time.monotonic() - sent_at
        report = (reply.model_extra or {}).get("ponder", {})
        ok = bool(report.get("answer")) and answers_equal(report["answer"], row["answer"])
        with tally.lock:
            tally.outcomes["200"] += 1
            tally.tiers[report.get("tier", "?")] += 1
            tally.early_stops += bool(report.get("stopped_early"))
            tally.correct += ok
            launched = int(report.get("samples", {}).get("launched", 0))
            tally.samples_launched += launched
            tally.tokens_used += int(report.get("tokens_used", 0))
            tally.answers[i] = (latency, int(report.get("tokens_used", 0)), launched)

    threads = [threading.Thread(target=one, args=(i, at), daemon=True)
               for i, at in enumerate(arrivals)]
    for thread in threads:
        thread.start()
    return threads


def _scalar(prometheus_url: str, promql: str) -> float:
    from prometheus_api_client import PrometheusConnect

    result = PrometheusConnect(url=prometheus_url, disable_ssl=True).custom_query(promql)
    return float(result[0]["value"][1]) if result else 0.0


def observe(cluster: Cluster, prometheus_url: str, t: float) -> Sample:
    status = json.loads(cluster.kubectl("get", "rsvc", "math", "-o", "json")).get("status", {})
    return Sample(
        t=t,
        rps=_scalar(prometheus_url, "sum(rate(ponder_router_requests_total[10s]))"),
        queue=_scalar(prometheus_url, "sum(ponder_router_queue_depth)"),
        demand=_scalar(prometheus_url, "sum(ponder_router_demand_tokens)"),
        desired=int(status.get("desiredReplicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        hourly_cost=float(status.get("hourlyCost") or 0.0),
    )


def plot(history: list[Sample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.step(t, [s.desired for s in history], where="post", label="desired replicas")
    top.step(t, [s.ready for s in history], where="post", label="ready replicas")
    top.set_ylabel("Triton replicas")
    top.legend(loc="upper right")
    bottom.plot(t, [s.demand for s in history], color="tab:red", label="demand (tokens)")
    bottom.set_ylabel("ponder_router_demand_tokens")
    bottom.set_xlabel("seconds since the replay started")
    twin = bottom.twinx()
    twin.plot(t, [s.rps for s in history], color="tab:gray", label="requests/s")
    twin.set_ylabel("requests/s")
    fig.suptitle("Ponder demo: replicas follow difficulty-weighted demand")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cost_report(prometheus_url: str, since: datetime) -> None:
    """``ponder cost report`` for the replay, read back from Prometheus."""
    time.sleep(3)  # the last scrapes of the operator's counters
    say("\n   $ ponder cost report --group-by service,tier")
    from ponder_tools.cli import main as ponder

    step = 5  # seconds: the report wants the period in whole steps
    start = int(since.timestamp()) // step * step
    end = int(time.time()) // step * step
    code = ponder(["cost", "report", "--prometheus", prometheus_url,
                   "--start", datetime.fromtimestamp(start, UTC).isoformat(),
                   "--end", datetime.fromtimestamp(end, UTC).isoformat(),
                   "--resolution", f"{step}s", "--group-by", "service,tier",
                   "--progress", "never"])
    if code != 0:
        say(f"   (the cost report exited {code})")


@dataclass
class DemoResult:
    history: list[Sample]
    tally: Tally
    gpu_hours: float
    plot_path: Path
    economics: Economics
    triton_ready_seconds: list[float]
    """Each Triton pod's time from creation to Ready (``PodRunner.triton_ready_seconds``)."""


def run(stack: ExitStack, state: Path, options: DemoOptions) -> DemoResult:
    say("== 1. the local stack (real processes on 127.0.0.1)")
    cluster = Cluster(state / "cluster",
                      runner_selector=("ponder.dev/component", ("triton", "router")))
    stack.callback(cluster.stop)
    cluster.start(nodes=NODES)
    for name, seconds in cluster.startup_seconds.items():
        say(f"   {name:<24} healthy in {seconds:5.1f} s")
    runner = PodRunner(cluster, state / "pods").start()
    stack.callback(runner.stop)
    operator_metrics = free_port()
    prometheus = Prometheus(
        state / "prometheus", scrape_interval_seconds=1.0,
        jobs={"ponder-operator": [f"127.0.0.1:{operator_metrics}"]},
        extra_scrape_configs=[file_discovery_job(runner.targets_file)])
    stack.callback(prometheus.stop)
    prometheus.start()
    say(f"   {'prometheus':<24} healthy in {prometheus.startup_seconds:5.1f} s")

    say("\n== 2. helm install, the operator, kubectl apply examples/demo.yaml")
    cluster.helm("install", RELEASE, str(REPO / "charts" / "ponder"), "-n", RELEASE_NAMESPACE,
                 "--create-namespace", "--wait", "--timeout", "120s",
                 "--set", f"operator.prometheusUrl={prometheus.url}")
    say(cluster.helm("list", "-n", RELEASE_NAMESPACE).stdout.rstrip())
    account = cluster.kubectl("get", "serviceaccount", "-n", RELEASE_NAMESPACE, "-l",
                              f"app.kubernetes.io/instance={RELEASE}", "-o",
                              "jsonpath={.items[0].metadata.name}")
    kubeconfig = cluster.service_account_kubeconfig(account, RELEASE_NAMESPACE,
                                                    state / "operator.kubeconfig")
    health = free_port()
    operator = Process("operator", [sys.executable, "-m", "ponder_operator"],
                       state / "operator.log", env={
                           "KUBECONFIG": str(kubeconfig), "PONDER_STANDALONE": "1",
                           "PONDER_HEALTH_PORT": str(health),
                           "PONDER_METRICS_PORT": str(operator_metrics),
                           "PONDER_PROMETHEUS_URL": prometheus.url,
                           "PONDER_PRICING_FILE": str(DATA / "prices" / "gpu_price_summary.csv"),
                       })
    stack.callback(operator.stop)
    operator.start().wait_until(lambda: http_ok(f"http://127.0.0.1:{health}/healthz"), 60)
    say("   ponder-operator running as the chart's ServiceAccount")
    repository, _ = repository_configmap(MODEL_CONFIGMAP, [MODEL])
    cluster.kubectl("apply", "-n", "default", "-f", "-", input_text=yaml.safe_dump(repository))
    cluster.kubectl("apply", "-n", "default", "-f", str(SERVICE_MANIFEST))
    deadline = time.monotonic() + 120
    while not (runner.ready_ips("router") and runner.ready_ips("triton")):
        if time.monotonic() > deadline:
            raise TimeoutError("the router and Triton pods never became ready")
        time.sleep(0.5)
    say(cluster.kubectl("get", "rsvc,pods", "-n", "default", "-o", "wide").rstrip())
    url = f"http://{runner.ready_ips('router')[0]}:8080"

    arrivals = trace_slice(options)
    say(f"\n== 3. replaying {len(arrivals)} requests of the Azure conv trace's busiest "
        f"{options.window_minutes} min in {options.replay_seconds:.0f} s")
    say(f"{'t(s)':>5} {'req/s':>6} {'queue':>6} {'demand':>8} {'replicas':>9} "
        f"{'answered':>9} {'429':>4} {'early':>6} {'accuracy':>9} {'$/h':>7}  tiers")
    tally, history = Tally(), []
    started_at = datetime.now(UTC)
    threads = replay(url, arrivals, tally, options.seed)
    started = time.monotonic()
    end = started + options.replay_seconds + options.settle_seconds
    while time.monotonic() < end:
        time.sleep(2.0)
        sample = observe(cluster, prometheus.url, time.monotonic() - started)
        history.append(sample)
        with tally.lock:
            answered = tally.outcomes["200"]
            accuracy = f"{tally.correct / answered:.0%}" if answered else "-"
            tiers = " ".join(f"{k}:{v}" for k, v in sorted(tally.tiers.items()))
            say(f"{sample.t:5.0f} {sample.rps:6.2f} {sample.queue:6.0f} {sample.demand:8.0f} "
                f"{sample.ready:>4}/{sample.desired:<4} {answered:9d} "
                f"{tally.outcomes['429']:4d} {tally.early_stops:6d} {accuracy:>9} "
                f"{sample.hourly_cost:7.2f}  {tiers}")
    for thread in threads:
        thread.join(timeout=120)

    say("\n== 4. the result")
    say(cluster.kubectl("get", "rsvc", "-n", "default").rstrip())
    events = json.loads(cluster.kubectl("get", "events", "-n", "default", "--field-selector",
                                        "reason=Scaled", "-o", "json"))["items"]
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or ""):
        say(f"   {event.get('lastTimestamp')}  {event['message']}")
    cost_report(prometheus.url, started_at)
    plot_path = options.out_dir / "demo-replicas.png"
    plot(history, plot_path)
    say(f"   plot of replicas and demand: {plot_path}")
    status = json.loads(cluster.kubectl("get", "rsvc", "math", "-n", "default", "-o", "json"))
    gpu_hours = float(status["status"].get("gpuHours") or 0.0)
    cost = float(status["status"].get("cost") or 0.0)
    say(f"   requests: sent {tally.sent}, {dict(tally.outcomes)}; "
        f"GPU-hours {gpu_hours:.4f}, cost ${cost:.4f}")
    money = economics(tally, cost)
    fixed = ", ".join(f"maj@{n} ${c:.4f}" for n, c in money.fixed_cost_usd.items())
    say(f"   accuracy {money.accuracy:.1%} ({money.correct} of {money.answered} right, the "
        f"stand-in knows the answers); ${money.usd_per_1k_correct:.2f} per 1,000 correct "
        f"answers; fixed maj@N for the same requests would have cost about: {fixed}")
    if os.environ.get("KEEP") == "1":
        say(f"KEEP=1: the stack stays up. export KUBECONFIG={cluster.kubeconfig}; router "
            f"{url}/v1; Prometheus {prometheus.url}. Ctrl-C stops everything.")
        signal.pause()
    return DemoResult(history, tally, gpu_hours, plot_path, money,
                      list(runner.triton_ready_seconds))


def main() -> int:
    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    options = DemoOptions(**yaml.safe_load(os.environ.get("PONDER_DEMO_OPTIONS", "{}")))
    state = Path(tempfile.mkdtemp(prefix="ponder-demo-"))
    t0 = time.monotonic()
    try:
        with ExitStack() as stack:
            run(stack, state, options)
    except KeyboardInterrupt:
        say("interrupted: every process the demo started has been stopped")
        return 130
    except (MissingComponentError, StartupError, TimeoutError, ToolError) as exc:
        say(f"demo failed, everything it started is stopped: {exc}")
        return 2
    say(f"demo finished in {time.monotonic() - t0:.0f} s; every process it started is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
