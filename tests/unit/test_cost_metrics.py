"""The operator's cost and replica metrics: names, labels, resuming after a restart."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ponder_operator.api import ReasoningServiceSpec, ReasoningServiceStatus
from ponder_operator.metrics import (
    SERIES_LABELS,
    OperatorMetrics,
    service_labels,
    start_metrics_server,
)
from ponder_operator.policy.scaling import Signals

LABELS = {"team": "math", "department": "rnd", "env": "prod", "owner": "ada", "app": "tutor"}


def spec(**cost: Any) -> ReasoningServiceSpec:
    return ReasoningServiceSpec.model_validate({
        "model": {"name": "tiny", "repository": {"configMap": {"name": "m"}}},
        "resources": {"gpusPerReplica": 2, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        "cost": cost,
    })


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    for (sample, got), v in samples(metrics).items():
        if sample == name and all(dict(got).get(k) == want for k, want in labels.items()):
            return v
    return None


def tick(metrics: OperatorMetrics, *, gpu_seconds: float = 10.0, cost: float | None = 0.02,
         labels: dict[str, str] = LABELS, gpu_type: str = "H100") -> None:
    metrics.record_tick("research", "alpha", gpu_type=gpu_type, labels=labels,
                        gpu_seconds=gpu_seconds, cost=cost,
                        hourly_cost=None if cost is None else 7.2, ready=2, pending=1,
                        desired=3, ready_gpus=4)


def test_a_tick_exports_every_series_with_the_cost_labels() -> None:
    metrics = OperatorMetrics()
    tick(metrics)
    names = {name for name, _ in samples(metrics)}
    assert names == {"ponder_gpu_seconds_total", "ponder_cost_total", "ponder_hourly_cost",
                     "ponder_idle_gpu_seconds_total", "ponder_ready_gpus", "ponder_replicas"}
    gpu = next(dict(labels) for name, labels in samples(metrics)
               if name == "ponder_gpu_seconds_total")
    assert set(gpu) == set(SERIES_LABELS)
    assert gpu == {"namespace": "research", "service": "alpha", "gpu_type": "H100", **LABELS}
    assert value(metrics, "ponder_replicas", state="ready") == 2
    assert value(metrics, "ponder_replicas", state="pending") == 1
    assert value(metrics, "ponder_replicas", state="desired") == 3
    assert value(metrics, "ponder_ready_gpus") == 4
    assert value(metrics, "ponder_hourly_cost") == pytest.approx(7.2)


def test_ticks_add_up_and_resume_starts_from_the_status_totals() -> None:
    metrics = OperatorMetrics()
    metrics.resume("research", "alpha", gpu_type="H100", labels=LABELS,
                   gpu_seconds_total=3600.0, cost_total=5.0)
    metrics.resume("research", "alpha", gpu_type="H100", labels=LABELS,
                   gpu_seconds_total=9999.0, cost_total=99.0)  # already resumed: no-op
    tick(metrics)
    tick(metrics)
    assert value(metrics, "ponder_gpu_seconds_total") == pytest.approx(3620.0)
    assert value(metrics, "ponder_cost_total") == pytest.approx(5.04)


def test_an_unpriced_service_has_gpu_time_but_no_cost_series() -> None:
    metrics = OperatorMetrics()
    tick(metrics, cost=None)
    assert value(metrics, "ponder_gpu_seconds_total") == pytest.approx(10.0)
    assert value(metrics, "ponder_cost_total") is None
    assert value(metrics, "ponder_hourly_cost") is None


def test_new_labels_move_the_service_to_new_series_at_the_same_totals() -> None:
    metrics = OperatorMetrics()
    metrics.resume("research", "alpha", gpu_type="H100", labels=LABELS,
                   gpu_seconds_total=100.0, cost_total=1.0)
    tick(metrics)
    tick(metrics, labels={**LABELS, "team": "search"})
    teams = {dict(labels)["team"] for name, labels in samples(metrics)
             if name == "ponder_gpu_seconds_total"}
    assert teams == {"search"}
    assert value(metrics, "ponder_gpu_seconds_total", team="search") == pytest.approx(120.0)
    assert value(metrics, "ponder_cost_total", team="search") == pytest.approx(1.04)


def test_forget_drops_every_series_of_a_deleted_service() -> None:
    metrics = OperatorMetrics()
    tick(metrics)
    metrics.forget("research", "alpha")
    assert samples(metrics) == {}


def status(gpu_seconds: float, cost: float | None, ready: int = 2) -> ReasoningServiceStatus:
    return ReasoningServiceStatus(gpu_seconds_total=gpu_seconds, cost=cost,
                                  hourly_cost=None if cost is None else 5.0 * ready,
                                  replicas=3, ready_replicas=ready, desired_replicas=4)


def test_counters_advance_only_to_persisted_totals_so_a_restart_never_steps_back() -> None:
    s = spec(gpuHourlyPrice=2.5, labels={"team": "math"})
    first = OperatorMetrics()
    stored = status(7200.0, 5.0)
    first.observe("research", "alpha", s, stored, status(7210.0, 5.01), persisted=True)
    first.observe("research", "alpha", s, status(7210.0, 5.01), status(7220.0, 5.02),
                  persisted=False)  # computed, not written yet
    assert value(first, "ponder_gpu_seconds_total") == pytest.approx(7210.0)
    assert value(first, "ponder_cost_total") == pytest.approx(5.01)
    assert value(first, "ponder_replicas", state="pending") == 1
    assert value(first, "ponder_ready_gpus") == 4  # 2 replicas x 2 GPUs
    # The process restarts; the status holds 7210 s, what the last process exported.
    second = OperatorMetrics()
    second.observe("research", "alpha", s, status(7210.0, 5.01), status(7215.0, 5.015),
                   persisted=True)
    assert value(second, "ponder_gpu_seconds_total", gpu_type="NVIDIA-H100-80GB-HBM3",
                 team="math") == pytest.approx(7215.0)
    first.observe("research", "alpha", s, status(7220.0, 5.02), status(7230.0, 5.03),
                  persisted=True)
    assert value(first, "ponder_gpu_seconds_total") == pytest.approx(7230.0)


@pytest.mark.parametrize(("signals", "idle_seconds"), [
    (Signals(demand_tokens=0.0), 10.0),
    (Signals(demand_tokens=12.0), 0.0),
    (Signals(demand_tokens=0.0, stale=True), 0.0),  # unknown load is not idle
    (Signals(read_ok=False, error="down"), 0.0),
    (None, 0.0),
])
def test_idle_gpu_seconds_count_only_a_fresh_zero_demand(
    signals: Signals | None, idle_seconds: float,
) -> None:
    metrics = OperatorMetrics()
    metrics.observe("research", "alpha", spec(gpuHourlyPrice=1.0), status(100.0, 1.0),
                    status(110.0, 1.01), persisted=False, signals=signals)
    assert value(metrics, "ponder_idle_gpu_seconds_total") == pytest.approx(idle_seconds)


@pytest.mark.parametrize(("cost", "expected"), [
    ({"pricing": {"cloud": "gcp", "gpuType": "H100"}}, "H100"),
    ({"gpuHourlyPrice": 3.0}, "NVIDIA-H100-80GB-HBM3"),
])
def test_the_gpu_type_is_the_price_list_name_else_the_node_product(
    cost: dict[str, Any], expected: str,
) -> None:
    gpu_type, labels = service_labels(spec(**cost, labels={"env": "prod"}))
    assert gpu_type == expected
    assert labels == {"team": "", "department": "", "env": "prod", "owner": "", "app": ""}


def test_the_metrics_server_serves_the_exposition() -> None:
    metrics = OperatorMetrics()
    tick(metrics)
    server = start_metrics_server("127.0.0.1", 0, metrics)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'ponder_gpu_seconds_total{app="tutor"' in body
    assert "ponder_cost_total" in body
