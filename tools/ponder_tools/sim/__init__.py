"""Trace-replay simulator: real request traces against Ponder's autoscaler and its peers.

Modules, in the order a replay uses them:

- ``traces``    — public request traces (Azure 2023 conv/code, Mooncake), read in place;
- ``workload``  — each request budgeted by the router's own estimator and budget policy;
- ``engine``    — the discrete-event replay: router queue, batching replicas, start-up,
  GPU capacity; ``Autoscaler`` is the interface a scaling loop implements;
- ``baselines`` — Ponder's loop (``policy.compute_desired_replicas``), HPA, KEDA, and the
  common ``CapacityTarget`` they all use;
- ``oracle``    — the clairvoyant lower bound on GPU time;
- ``report``    — summaries, the table, GPU prices and plots;
- ``compare``   — all of the above for one workload; ``cli`` — ``ponder simulate``;
- ``fleet``     — the whole loop: RequestPlan over recorded samples on the pool (accuracy,
  latency, SLO and $ per 1,000 correct answers; ``bench/bench_fleet.py``).

``errors`` holds ``SimulationError``. The simulator calls the same policy code as the live
operator and router; it never copies data into the project.
"""

from __future__ import annotations

from .baselines import (
    CapacityTarget,
    HpaAutoscaler,
    HpaBehavior,
    KedaAutoscaler,
    PonderAutoscaler,
    derive_capacity_target,
)
from .compare import POLICY_NAMES, Comparison, build_autoscalers, ponder_spec, run_comparison
from .engine import Autoscaler, Observation, ReplicaModel, SimConfig, SimResult, simulate
from .errors import SimulationError
from .oracle import OracleBound, compute_oracle
from .report import PolicySummary, format_table, gpu_hourly_price, plot_timelines, summarize
from .traces import TRACE_FILES, TRACE_NAMES, Trace, load_trace, servegen_trace, synthetic_trace
from .workload import Workload, build_workload, load_problems

__all__ = [
    "POLICY_NAMES",
    "TRACE_FILES",
    "TRACE_NAMES",
    "Autoscaler",
    "CapacityTarget",
    "Comparison",
    "HpaAutoscaler",
    "HpaBehavior",
    "KedaAutoscaler",
    "Observation",
    "OracleBound",
    "PolicySummary",
    "PonderAutoscaler",
    "ReplicaModel",
    "SimConfig",
    "SimResult",
    "SimulationError",
    "Trace",
    "Workload",
    "build_autoscalers",
    "build_workload",
    "compute_oracle",
    "derive_capacity_target",
    "format_table",
    "gpu_hourly_price",
    "load_problems",
    "load_trace",
    "plot_timelines",
    "ponder_spec",
    "run_comparison",
    "servegen_trace",
    "simulate",
    "summarize",
    "synthetic_trace",
]
