"""Pod-deletion-cost: a scale-down removes the idlest Triton pod first (issue 20, row 9).

The policy turns each pod's load into a cost and says which annotations change
materially; the adapter writes those through the Kubernetes API, bounded per tick; the
Prometheus adapter reads each pod's load, keyed by pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_api_client import PrometheusConnect

from ponder_operator import pod_costs
from ponder_operator.adapters.kube import Kube
from ponder_operator.adapters.prometheus import QUERIES, SignalCache, fetch_batch
from ponder_operator.policy.deletion_cost import (
    DELETION_COST_ANNOTATION,
    PodLoad,
    assign_deletion_costs,
    changed_materially,
    compute_deletion_cost,
)
from ponder_operator.views import summarize_pod


@pytest.mark.parametrize(("load", "cost"), [
    (0.0, 0), (0.4, 0), (1.0, 1), (7.6, 8), (250.0, 250), (-1.0, 0), (float("nan"), 0),
    (1e12, 2**31 - 1),
])
def test_the_cost_is_the_requests_in_the_pod_and_an_idle_pod_costs_nothing(
    load: float, cost: int
) -> None:
    assert compute_deletion_cost(load) == cost


@pytest.mark.parametrize(("current", "new", "write"), [
    pytest.param(None, 0, False, id="absent-is-already-zero"),
    pytest.param(None, 3, True, id="first-load"),
    pytest.param(0, 1, True, id="idle-pod-gets-busy"),
    pytest.param(5, 0, True, id="busy-pod-goes-idle"),
    pytest.param(8, 8, False, id="unchanged"),
    pytest.param(8, 12, False, id="load-wanders-within-a-factor-of-two"),
    pytest.param(8, 5, False, id="load-wanders-down-within-a-factor-of-two"),
    pytest.param(8, 16, True, id="load-doubles"),
    pytest.param(8, 4, True, id="load-halves"),
    pytest.param(1, 2, False, id="one-request-more-is-noise"),
    pytest.param(1, 3, True, id="two-requests-more-and-a-factor-of-three"),
])
def test_an_annotation_changes_only_when_the_cost_changes_materially(
    current: int | None, new: int, write: bool
) -> None:
    assert changed_materially(current, new) is write


def test_the_writes_are_bounded_and_the_changes_to_or_from_idle_go_first() -> None:
    pods = [PodLoad("busy-more", 40.0, 10), PodLoad("now-idle", 0.0, 6),
            PodLoad("now-busy", 3.0, None), PodLoad("unknown", None, 7),
            PodLoad("steady", 9.0, 10), PodLoad("busier", 80.0, 20)]
    assert assign_deletion_costs(pods, max_writes=10) == {
        "busy-more": 40, "now-idle": 0, "now-busy": 3, "busier": 80}
    assert assign_deletion_costs(pods, max_writes=2) == {"now-idle": 0, "now-busy": 3}
    assert assign_deletion_costs(pods, max_writes=0) == {}


class FakeKube:
    """Records pod annotations; ``refuse`` raises the API's 403 for every write."""

    def __init__(self, refuse: bool = False, gone: frozenset[str] = frozenset()) -> None:
        self.refuse, self.gone = refuse, gone
        self.writes: list[tuple[str, str, dict[str, str]]] = []

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        if self.refuse:
            raise ApiException(status=403, reason="Forbidden")
        if name in self.gone:
            return False
        self.writes.append((namespace, name, dict(annotations)))
        return True


def pod(name: str, cost: str | None = None) -> dict[str, Any]:
    annotations = {} if cost is None else {DELETION_COST_ANNOTATION: cost, "other": "x"}
    return summarize_pod({"metadata": {"name": name, "annotations": annotations},
                          "status": {}})


def test_the_watch_keeps_only_the_deletion_cost_annotation_of_a_pod() -> None:
    assert pod("a", "7")["metadata"]["annotations"] == {DELETION_COST_ANNOTATION: "7"}
    assert pod("b")["metadata"]["annotations"] == {}


def test_refresh_writes_the_changed_costs_as_strings_on_the_pods() -> None:
    kube = FakeKube(gone=frozenset({"deleted"}))
    pods = [pod("idle", "12"), pod("busy"), pod("steady", "9"), pod("deleted", "4"),
            pod("bad", "not-a-number")]
    loads = {"idle": 0.0, "busy": 30.0, "steady": 11.0, "deleted": 0.0, "bad": 2.0}
    written = pod_costs.refresh(cast(Kube, kube), "ns", pods, loads)
    assert written == {"idle": 0, "busy": 30, "bad": 2}
    assert ("ns", "idle", {DELETION_COST_ANNOTATION: "0"}) in kube.writes
    assert ("ns", "busy", {DELETION_COST_ANNOTATION: "30"}) in kube.writes


def test_a_failed_read_writes_nothing_and_a_refused_write_does_not_fail_the_tick() -> None:
    kube = FakeKube()
    assert pod_costs.refresh(cast(Kube, kube), "ns", [pod("a", "5")], None) == {}
    refusing = FakeKube(refuse=True)
    assert pod_costs.refresh(cast(Kube, refusing), "ns", [pod("a"), pod("b")],
                             {"a": 3.0, "b": 4.0}) == {}


class FakePrometheus:
    """Answers each query with the series given for it (by query name)."""

    def __init__(self, answers: Mapping[str, list[dict[str, Any]]]) -> None:
        self.answers = answers

    def custom_query(self, promql: str) -> list[dict[str, Any]]:
        (name,) = [n for n, q in QUERIES.items() if q == promql]
        return self.answers.get(name, [])


def test_the_pod_loads_are_read_by_pod_in_the_services_namespace() -> None:
    series = [{"metric": {"namespace": "ns", "pod": "svc-triton-a"}, "value": [0, "3"]},
              {"metric": {"namespace": "ns", "pod": "svc-triton-b"}, "value": [0, "0"]},
              {"metric": {"namespace": "other", "pod": "x-triton-c"}, "value": [0, "9"]}]
    client = FakePrometheus({"pod_load": series})
    cache = SignalCache(fetch=lambda: fetch_batch(cast(PrometheusConnect, client)))
    assert cache.pod_loads("ns") is None  # nothing read yet
    cache.signals("ns", "svc", now_seconds=100.0)
    assert cache.pod_loads("ns") == {"svc-triton-a": 3.0, "svc-triton-b": 0.0}


def test_the_pod_load_query_counts_the_engines_and_tritons_requests_of_triton_pods() -> None:
    query = QUERIES["pod_load"]
    assert query.startswith("sum by (namespace, pod) (")
    for series in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                   "nv_inference_pending_request_count"):
        assert series in query
    assert 'ponder_service!=""' in query
