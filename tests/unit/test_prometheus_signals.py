"""The Prometheus adapter's reading of a query batch into the policy's ``Signals``.

The batch is what ``fetch_batch`` returns: each query's value per (namespace, service).
With the vLLM backend, requests wait inside the engine (``vllm:num_requests_waiting``)
while Triton's own pending count stays near 0; the saturated replicas' generation rate is
the measured throughput. Without the ``vllm:`` series the adapter falls back to Triton's.
"""

from __future__ import annotations

from typing import Any

import pytest

from ponder_operator.adapters.prometheus import QUERIES, Key, signals_for
from ponder_operator.api.conditions import Reason
from ponder_operator.policy.scaling import ScalingSpec, ScalingState, compute_desired_replicas

NOW = 1_000.0
SERVICE: Key = ("ns", "svc")


def batch(**values: float) -> dict[str, dict[Key, float]]:
    """A batch for one service with the router's series and the given others."""
    router = {"demand": 1_000.0, "queue": 0.0, "inflight": 4.0, "newest": NOW}
    out: dict[str, dict[Key, float]] = {name: {} for name in QUERIES}
    for name, value in {**router, **values}.items():
        out[name][SERVICE] = value
    return out


@pytest.mark.parametrize(("values", "pending", "measured"), [
    pytest.param({"pending": 0.0, "engine_waiting": 12.0, "saturated_tokens_per_second": 900.0},
                 12.0, 900.0, id="vllm-engine-queue-and-throughput"),
    pytest.param({"pending": 3.0}, 3.0, None, id="triton-series-alone-as-the-fallback"),
    pytest.param({"engine_waiting": 5.0}, 5.0, None, id="engine-queue-alone"),
    pytest.param({"pending": 2.0, "engine_waiting": 5.0}, 7.0, None,
                 id="triton-and-engine-queues-add-up"),
    pytest.param({}, None, None, id="no-triton-series"),
])
def test_the_queue_in_the_triton_pods_and_the_measured_throughput(
    values: dict[str, float], pending: float | None, measured: float | None
) -> None:
    signals = signals_for(batch(**values), *SERVICE, NOW, max_age_seconds=30.0)
    assert signals.read_ok
    assert not signals.stale
    assert signals.triton_pending_requests == pending
    assert signals.measured_tokens_per_second_per_replica == measured


def test_the_engine_queries_read_the_vllm_backends_series_by_service() -> None:
    assert "vllm:num_requests_waiting" in QUERIES["engine_waiting"]
    throughput = QUERIES["saturated_tokens_per_second"]
    assert "rate(vllm:generation_tokens_total[" in throughput
    assert "min_over_time(vllm:num_requests_waiting[" in throughput
    for name in ("pending", "engine_waiting", "saturated_tokens_per_second"):
        assert '"service", "$1", "ponder_service"' in QUERIES[name]


def decide(values: dict[str, Any]) -> tuple[int, Reason]:
    spec = ScalingSpec(max_replicas=20, throughput_prior_tokens_per_second=2_000.0,
                       target_drain_seconds=10.0, queue_per_replica=8.0,
                       scale_down_stabilization_seconds=0.0)
    signals = signals_for(batch(**{"demand": 60_000.0, **values}), *SERVICE, NOW, 30.0)
    decision = compute_desired_replicas(spec, signals, ScalingState(current_replicas=2,
                                                                    ready_replicas=2), NOW)
    return decision.desired_replicas, decision.reason


def test_a_measured_throughput_below_the_prior_buys_the_replicas_the_prior_would_not() -> None:
    # 60,000 tokens to drain in 10 s: 3 replicas at the 2,000 tokens/s prior, 6 at 1,000.
    assert decide({})[0] == 3
    assert decide({"saturated_tokens_per_second": 1_000.0}) == (6, Reason.DEMAND_INCREASE)


def test_requests_waiting_in_the_vllm_engine_grow_the_pool_past_the_demand() -> None:
    # 80 waiting in the engines, 8 per replica: 10 replicas, where Triton's count says 0.
    assert decide({"pending": 0.0}) == (3, Reason.DEMAND_INCREASE)
    assert decide({"pending": 0.0, "engine_waiting": 80.0}) == (10, Reason.QUEUE_FLOOR)
