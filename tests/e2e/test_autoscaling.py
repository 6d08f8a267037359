"""The operator scales real Triton pods on the demand Prometheus reads from real routers.

Activation, scale-out under a burst, scale-in after it; metrics lost → replicas held and
Degraded; scale to zero and activation from zero. Every request is accounted for. Each
test applies its own ReasoningService through ``apply_service``, which deletes it afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import httpx

from conftest import SIM_REPOSITORY_ITEMS, ApplyService, Loop
from fixtures_operator import eventually
from ponder_tools.data import shared_data_dir

DATA = shared_data_dir()


def hard_problems(count: int) -> list[str]:
    rows = [json.loads(line) for line in (DATA / "math" / "math500_test.jsonl").open()]
    return [r["problem"] for r in rows if r["level"] == 5][:count]


def service(name: str, **scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ponder.dev/v1alpha1", "kind": "ReasoningService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "model": {"name": "ponder-sim-llm", "tritonModelName": "ponder-sim-llm",
                      "backend": "python",
                      "repository": {"configMap": {"name": "sim",
                                                   "items": SIM_REPOSITORY_ITEMS}}},
            "scaling": {"intervalSeconds": 2, "targetDrainSeconds": 5,
                        "throughputPriorTokensPerSecond": 200,
                        "scaleDownStabilizationSeconds": 10, "scaleDownMaxStep": 4,
                        **scaling},
            "budgets": {"tiers": [
                {"name": "hard", "maxDifficulty": 1.0, "maxTokens": 1024, "maxSamples": 6,
                 "initialSamples": 3, "strategy": "vote"}]},
            "router": {"replicas": 1},
        },
    }


class Load:
    """Closed-loop clients for a bounded time; every outcome counted."""

    def __init__(self, url: str, workers: int, seconds: float) -> None:
        self.url, self.workers, self.seconds = url, workers, seconds
        self.outcomes: Counter[str] = Counter()
        self.sent = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(i,)) for i in range(workers)]

    def _work(self, index: int) -> None:
        prompts = hard_problems(20)
        deadline = time.monotonic() + self.seconds
        with httpx.Client(timeout=120) as client:
            i = index
            while time.monotonic() < deadline:
                with self._lock:
                    self.sent += 1
                try:
                    reply = client.post(f"{self.url}/v1/chat/completions", json={
                        "model": "ponder-sim-llm",
                        "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]})
                    outcome = str(reply.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self.outcomes[outcome] += 1
                i += self.workers

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self._threads:
            t.join(timeout=180)


def test_a_burst_scales_triton_out_and_its_end_scales_it_back_in(
    loop: Loop, apply_service: ApplyService,
) -> None:
    apply_service(service("burst", minReplicas=1, maxReplicas=3))
    eventually(lambda: loop.condition("burst", "Ready").get("status") == "True", 90, "Ready")
    url = loop.router_url()
    assert loop.triton_replicas("burst") == 1

    peak = 0
    with Load(url, workers=8, seconds=30) as load:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            peak = max(peak, len(loop.runner.ready_ips("triton")))
            time.sleep(0.5)
    assert peak >= 2, f"no scale-out under load (outcomes {load.outcomes})"
    assert loop.rsvc("burst")["status"]["lastScaleReason"]
    assert load.sent == sum(load.outcomes.values()), "every request is accounted for"
    assert set(load.outcomes) <= {"200", "429"}, load.outcomes
    assert load.outcomes["200"] > 0

    eventually(lambda: loop.triton_replicas("burst") == 1, 90, "scale-in after the burst")
    events = loop.cluster.kubectl("get", "events", "--field-selector", "reason=Scaled",
                                  "-o", "json")
    messages = [e["message"] for e in json.loads(events)["items"]]
    assert any("1 → " in m for m in messages), messages
    assert any("→ 1 " in m for m in messages), messages


def test_a_router_restart_under_load_is_not_read_as_no_demand(
    loop: Loop, apply_service: ApplyService,
) -> None:
    apply_service(service("restart", minReplicas=1, maxReplicas=3))
    eventually(lambda: loop.condition("restart", "Ready").get("status") == "True", 90, "Ready")
    pods = json.loads(loop.cluster.kubectl(
        "get", "pods", "-l", "ponder.dev/service=restart,ponder.dev/component=router",
        "-o", "json"))["items"]
    ip = eventually(lambda: next(r.ip for r in loop.runner.running.values()
                                 if r.ip == pods[0]["status"]["podIP"] and r.ready), 60)
    router = next(r.router for r in loop.runner.running.values() if r.ip == ip)
    assert router is not None
    with Load(f"http://{ip}:8080", workers=8, seconds=40) as load:
        eventually(lambda: loop.triton_replicas("restart") >= 2, 30, "scale-out under load")
        router.kill()  # its gauges vanish; the runner starts it again, empty
        lowest, watch_until = 3, time.monotonic() + 20
        while time.monotonic() < watch_until:
            lowest = min(lowest, loop.triton_replicas("restart"))
            time.sleep(0.5)
    assert lowest >= 2, "the restart's empty gauges were read as no demand"
    assert loop.rsvc("restart")["status"]["lastScaleReason"]
    assert load.sent == sum(load.outcomes.values()), "every request is accounted for"
    assert load.outcomes["200"] > 0, load.outcomes


def test_lost_metrics_hold_the_replicas_and_set_degraded(
    loop: Loop, apply_service: ApplyService,
) -> None:
    apply_service(service("held", minReplicas=1, maxReplicas=3))
    eventually(lambda: loop.condition("held", "Ready").get("status") == "True", 90, "Ready")
    eventually(lambda: loop.condition("held", "Degraded").get("status") == "False", 60,
               "healthy before the fault")
    before = loop.triton_replicas("held")
    port = loop.prometheus.port
    loop.prometheus.stop()
    try:
        eventually(lambda: loop.condition("held", "Degraded").get("status") == "True", 60,
                   "Degraded after Prometheus stopped")
        time.sleep(6)  # a few more ticks without metrics
        assert loop.triton_replicas("held") == before
        assert loop.condition("held", "Degraded")["reason"] in {"MetricsUnavailable",
                                                                 "MetricsStale"}
        assert loop.condition("held", "Scaling")["reason"].startswith("Held")
    finally:
        loop.prometheus.start(port=port)
    eventually(lambda: loop.condition("held", "Degraded").get("status") == "False", 60,
               "Degraded cleared after Prometheus is back")


def test_more_demand_than_gpus_sets_unschedulable_without_a_runaway(
    loop: Loop, apply_service: ApplyService,
) -> None:
    spec = service("l4", minReplicas=1, maxReplicas=6)
    spec["spec"]["resources"] = {"gpuProduct": "NVIDIA-L4"}  # one node, two GPUs
    apply_service(spec)
    eventually(lambda: loop.condition("l4", "Ready").get("status") == "True", 90, "Ready")
    desired: list[int] = []
    unschedulable_seen_at: int | None = None
    with Load(loop.router_url(), workers=8, seconds=25) as load:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            desired.append(loop.triton_replicas("l4"))
            if unschedulable_seen_at is None and \
                    loop.condition("l4", "Unschedulable").get("status") == "True":
                unschedulable_seen_at = len(desired)
            time.sleep(0.5)
    assert unschedulable_seen_at is not None, f"never Unschedulable (replicas {desired})"
    assert max(desired) <= 6
    after = desired[unschedulable_seen_at:]
    assert max(after, default=0) <= max(desired[:unschedulable_seen_at]), \
        f"kept adding replicas that cannot schedule: {desired}"
    assert set(load.outcomes) <= {"200", "429"}, load.outcomes
    assert loop.rsvc("l4")["status"]["atCeiling"] is True or max(desired) > 2
    # Without demand, the pods that cannot schedule go first.
    eventually(lambda: loop.triton_replicas("l4") <= 2, 60, "pending replicas removed")
    eventually(lambda: loop.condition("l4", "Unschedulable").get("status") == "False", 60,
               "Unschedulable cleared")


def test_an_idle_service_scales_to_zero_and_a_request_activates_it(
    loop: Loop, apply_service: ApplyService,
) -> None:
    apply_service(service("idle", minReplicas=0, maxReplicas=2,
                          scaleToZero={"enabled": True, "idleWindowSeconds": 30}))
    eventually(lambda: loop.rsvc("idle").get("status", {}).get("desiredReplicas") == 0
               and loop.triton_replicas("idle") == 0, 120, "scaled to zero")
    url = loop.router_url()
    eventually(lambda: not loop.runner.ready_ips("triton"), 60, "no Triton pod running")

    started = time.monotonic()
    reply = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "ponder-sim-llm", "messages": [{"role": "user", "content": "What is $2+2$?"}]})
    assert reply.status_code == 200, reply.text
    assert loop.triton_replicas("idle") >= 1
    assert "ActivateFromZero" in loop.rsvc("idle")["status"]["lastScaleReason"]
    assert time.monotonic() - started < 90
