"""``make demo``: the whole system on the local stack, then torn down.

1. Starts the real parts on loopback and prints how long each took to become healthy: the
   Kubernetes control plane with fake GPU nodes (KWOK), Triton serving the stand-in LLM
   (a simulator standing in for a GPU LLM), Prometheus, the Ponder operator.
2. Applies a ReasoningService with kubectl; the operator reconciles it (Triton and router
   Deployments, Services, the router's ConfigMap) and reports Ready.
3. Starts the router with the configuration the operator rendered (its Triton endpoint set
   to the local Triton: KWOK's pods run no containers) and sends MATH-500 problems through
   the ``openai`` client: easy problems get one short sample, hard ones a vote that stops
   early once the answer is settled.
4. Shows ``kubectl get rsvc``, then stops every process it started (also on Ctrl-C).
   ``KEEP=1`` leaves the stack up and prints how to reach it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from ponder_localstack.cluster import Cluster, NodeSpec
from ponder_localstack.paths import MissingComponentError
from ponder_localstack.proc import Process, free_port, http_ok
from ponder_localstack.prometheus import Prometheus
from ponder_localstack.triton import SimModelOptions, TritonServer

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("PONDER_DATA_DIR", REPO.parent / "shared" / "data"))
NODES = (NodeSpec("gpu-h100-0", gpus=8), NodeSpec("gpu-h100-1", gpus=8),
         NodeSpec("cpu-0", gpus=0))
SERVICE = {
    "apiVersion": "ponder.dev/v1alpha1", "kind": "ReasoningService",
    "metadata": {"name": "math", "namespace": "default"},
    "spec": {
        "model": {"name": "ponder-sim-llm", "tritonModelName": "ponder-sim-llm",
                  "repository": {"configMap": {"name": "sim-llm"}}},
        "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        "scaling": {"minReplicas": 2, "maxReplicas": 8},
        "budgets": {"tiers": [
            {"name": "easy", "maxDifficulty": 0.25, "maxTokens": 512, "strategy": "single"},
            {"name": "medium", "maxDifficulty": 0.5, "maxTokens": 1024, "maxSamples": 5,
             "initialSamples": 3, "strategy": "vote"},
            {"name": "hard", "maxDifficulty": 1.0, "maxTokens": 2048, "maxSamples": 12,
             "initialSamples": 4, "strategy": "vote"},
        ]},
        "router": {"replicas": 1},
        "cost": {"pricing": {"cloud": "gcp", "gpuType": "H100"}, "labels": {"team": "demo"}},
    },
}


def say(text: str) -> None:
    print(text, flush=True)


def wait_for(what: str, check: Any, timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {timeout_seconds:.0f} s")


def ready(cluster: Cluster) -> bool:
    out = cluster.kubectl("get", "rsvc", "math", "-o", "json", check=False)
    conditions = json.loads(out).get("status", {}).get("conditions", []) if out else []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def problems(count_per_level: int, seed: int = 7) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (DATA / "math" / "math500_test.jsonl").open()]
    rng = random.Random(seed)
    chosen: list[dict[str, Any]] = []
    for level in (1, 3, 5):
        chosen += rng.sample([r for r in rows if r["level"] == level], count_per_level)
    return chosen


def ask(base_url: str, rows: list[dict[str, Any]]) -> None:
    from openai import OpenAI

    from ponder_router.answers import answers_equal

    client = OpenAI(base_url=base_url, api_key="demo")
    say(f"\n{'level':>5} {'tier':>7} {'samples':>8} {'stop':>14} {'tokens':>7} {'correct':>8}")
    correct = 0
    for row in rows:
        reply = client.chat.completions.create(
            model="ponder-sim-llm", messages=[{"role": "user", "content": row["problem"]}])
        report = reply.model_extra["ponder"] if reply.model_extra else {}
        answer = report.get("answer") or ""
        ok = bool(answer) and answers_equal(answer, row["answer"])
        correct += ok
        samples = report.get("samples", {})
        say(f"{row['level']:>5} {report.get('tier', '?'):>7} "
            f"{samples.get('completed', 0):>3}/{report.get('budget', {}).get('max_samples', 0):<4}"
            f" {report.get('stop_reason', ''):>14} {report.get('tokens_used', 0):>7} "
            f"{'yes' if ok else 'no':>8}")
    say(f"accuracy {correct}/{len(rows)}")


def run(stack: ExitStack, state: Path) -> None:
    t0 = time.monotonic()
    say("== starting the local stack (real processes on 127.0.0.1)")
    cluster = Cluster(state / "cluster")
    stack.callback(cluster.stop)
    cluster.start(nodes=NODES)
    for name, seconds in cluster.startup_seconds.items():
        say(f"   {name:<24} healthy in {seconds:5.1f} s")
    triton = TritonServer(state / "triton", models=(
        SimModelOptions(token_latency_ms=2.0, max_concurrency=16),))
    stack.callback(triton.stop)
    triton.start()
    say(f"   {'tritonserver (CPU)':<24} healthy in {triton.startup_seconds:5.1f} s "
        f"(model ponder-sim-llm: a simulator standing in for a GPU LLM)")
    router_port = free_port()
    prometheus = Prometheus(state / "prometheus", jobs={
        "triton": [triton.metrics_url.split("/")[2]],
        "router": [f"127.0.0.1:{router_port}"]})
    stack.callback(prometheus.stop)
    prometheus.start()
    say(f"   {'prometheus':<24} healthy in {prometheus.startup_seconds:5.1f} s")

    for path in ("crds/reasoningservices.ponder.dev.yaml", "crds/kopf-peering.yaml"):
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/reasoningservices.ponder.dev")
    health = free_port()
    operator = Process("operator", [sys.executable, "-m", "ponder_operator"],
                       state / "operator.log", env={
                           **cluster.env(), "PONDER_STANDALONE": "1",
                           "PONDER_HEALTH_PORT": str(health),
                           "PONDER_PROMETHEUS_URL": prometheus.url,
                           "PONDER_PRICING_FILE": str(DATA / "prices" / "gpu_price_summary.csv"),
                       })
    stack.callback(operator.stop)
    operator.start().wait_until(lambda: http_ok(f"http://127.0.0.1:{health}/healthz"), 60)
    say(f"   {'ponder-operator':<24} healthy")

    say("\n== kubectl apply a ReasoningService; the operator reconciles it")
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(SERVICE))
    wait_for("ReasoningService Ready", lambda: ready(cluster), 90)
    say(cluster.kubectl("get", "rsvc,deployments,pods", "-o", "wide"))

    rendered = json.loads(json.loads(cluster.kubectl(
        "get", "configmap", "math-router", "-o", "json"))["data"]["router.json"])
    rendered.pop("discovery")
    rendered["endpoints"] = [triton.grpc_url]  # KWOK pods run nothing: use the local Triton
    config_path = state / "router.json"
    config_path.write_text(json.dumps(rendered))
    router = Process("router", [sys.executable, "-m", "ponder_router"], state / "router.log",
                     env={"PONDER_ROUTER_CONFIG": str(config_path),
                          "PONDER_ROUTER_PORT": str(router_port)})
    stack.callback(router.stop)
    router.start().wait_until(lambda: http_ok(f"http://127.0.0.1:{router_port}/readyz"), 60)
    say("== the router runs the config the operator rendered; MATH-500 through the openai SDK")
    ask(f"http://127.0.0.1:{router_port}/v1", problems(3))

    time.sleep(3)  # a few scrapes and an autoscaler tick
    say("\n== kubectl get rsvc")
    say(cluster.kubectl("get", "rsvc"))
    say(f"demo finished in {time.monotonic() - t0:.0f} s")
    if os.environ.get("KEEP") == "1":
        say(f"KEEP=1: stack left up. export KUBECONFIG={cluster.kubeconfig}; router at "
            f"http://127.0.0.1:{router_port}/v1; Prometheus at {prometheus.url}. Ctrl-C stops.")
        signal.pause()


def main() -> int:
    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    state = Path(tempfile.mkdtemp(prefix="ponder-demo-"))
    try:
        with ExitStack() as stack:
            run(stack, state)
    except KeyboardInterrupt:
        say("interrupted: every process the demo started has been stopped")
        return 130
    except MissingComponentError as exc:
        say(f"missing component: {exc}")
        return 2
    say("stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
