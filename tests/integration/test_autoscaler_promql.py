"""The autoscaler's PromQL over the Triton pods' series, evaluated by promtool (issue 20, row 11).

``promtool test rules`` evaluates each query of ``adapters.prometheus.QUERIES`` over
synthetic series at a 15 s scrape interval, as Prometheus would: the requests waiting in
the vLLM engines, the generation-token rate of the replicas saturated through the whole
rate window (their capacity), and each pod's requests for its deletion cost.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import require
from ponder_localstack.paths import debian_tool
from ponder_operator.adapters.prometheus import QUERIES

pytestmark = pytest.mark.promtool

SVC = 'namespace="ns", ponder_service="svc"'
# pod a: saturated throughout, 1,500 tokens per 15 s (100 tokens/s), 3 waiting;
# pod b: never saturated, 300 tokens per 15 s, none waiting;
# pod c: 600 tokens per 15 s (40 tokens/s), saturated only from 4m30s.
SERIES = [
    (f'vllm:generation_tokens_total{{{SVC}, instance="a", pod="svc-triton-a", model="m", '
     'version="1"}', "0+1500x40"),
    (f'vllm:num_requests_waiting{{{SVC}, instance="a", pod="svc-triton-a", model="m", '
     'version="1"}', "3x40"),
    (f'vllm:num_requests_running{{{SVC}, instance="a", pod="svc-triton-a", model="m", '
     'version="1"}', "4x40"),
    (f'nv_inference_pending_request_count{{{SVC}, instance="a", pod="svc-triton-a", '
     'model="m", version="1"}', "1x40"),
    (f'vllm:generation_tokens_total{{{SVC}, instance="b", pod="svc-triton-b", model="m", '
     'version="1"}', "0+300x40"),
    (f'vllm:num_requests_waiting{{{SVC}, instance="b", pod="svc-triton-b", model="m", '
     'version="1"}', "0x40"),
    (f'vllm:generation_tokens_total{{{SVC}, instance="c", pod="svc-triton-c", model="m", '
     'version="1"}', "0+600x40"),
    (f'vllm:num_requests_waiting{{{SVC}, instance="c", pod="svc-triton-c", model="m", '
     'version="1"}', "0x18 5x22"),
    # Not a Triton pod of a ReasoningService (no ponder_service): no deletion cost.
    ('vllm:num_requests_running{namespace="ns", instance="x", pod="other", model="m", '
     'version="1"}', "7x40"),
]
BY_SERVICE = f'{{{SVC}, service="svc"}}'


def expect(query: str, eval_time: str, samples: list[tuple[str, float]]) -> dict[str, Any]:
    return {"expr": QUERIES[query], "eval_time": eval_time,
            "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return require(lambda: debian_tool("promtool"))


def test_the_triton_queries_read_the_engine_queue_capacity_and_each_pods_load(
    promtool: Path, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "15s", "tests": [{
        "interval": "15s",
        "input_series": [{"series": s, "values": v} for s, v in SERIES],
        "promql_expr_test": [
            expect("engine_waiting", "5m", [(BY_SERVICE, 8)]),
            expect("pending", "5m", [(BY_SERVICE, 1)]),
            # at 5m only pod a has had requests waiting for the whole minute
            expect("saturated_tokens_per_second", "5m", [(BY_SERVICE, 100)]),
            # at 6m pod c has too: the mean of 100 and 40 tokens/s; pod b never counts
            expect("saturated_tokens_per_second", "6m", [(BY_SERVICE, 70)]),
            expect("pod_load", "5m", [('{namespace="ns", pod="svc-triton-a"}', 8),
                                      ('{namespace="ns", pod="svc-triton-b"}', 0),
                                      ('{namespace="ns", pod="svc-triton-c"}', 5)]),
        ],
    }]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([str(promtool), "test", "rules", "tests.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
