"""The simulator set up as a live stack is configured, and the figures both runs are judged on.

Role: the pure half of ``bench/bench_sim_vs_live.py``, which runs one trace slice through
``make demo``'s closed loop and through ``fleet.simulate_fleet``. Everything the simulator
is given here comes from the live stack's own configuration, never from its result:

- ``replica_model``: the stand-in LLM's serving parameters (its per-token latency and
  per-replica concurrency: each running sample decodes at ``1000 / token_latency_ms``
  tokens/s whatever the batch, since the stand-in sleeps per token on a thread of its own;
  no prefill) and the measured Triton start-up time;
- ``measure_sample_overhead``: what serving a sample costs beyond its tokens on the live
  path (router, gRPC, the python backend; on a shared CPU, the stalls too), measured like
  the start-up time: from the live run's single-sample requests, their latency less their
  tokens at the slope of latency against tokens (Theil-Sen, robust to stalled requests),
  never from the replica counts. Its *mean* is what sets the replicas (the autoscaler
  reads the demand that requests hold while they are open, and the demand integrated over
  time goes with the mean time they are open); its *median* is the typical request's.
  ``with_sample_overhead`` adds one of them to every sample as the tokens the stand-in
  writes in that time (the engine has no fixed per-sample time);
- ``service_setup``: the ReasoningService, read by the operator's own ``scaling_spec`` and
  rendered into the router's configuration by the operator's ``render_router_config``
  (tiers, shrink order, stopping rule), so the policy is the one the pods run;
- ``Figures`` and ``compare_figures``: replica counts over time (``replica_stats``: mean,
  peak, replica-seconds of a step function), requests answered, samples and tokens per
  request, latency percentiles, and each figure's simulated-to-live ratio. With this little
  traffic the pool's size hinges on whether a scaling tick catches a hard request in
  flight, so one run is one noisy draw: ``mean_figures`` averages several (live runs,
  or the simulator under several sample draws).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from ponder_operator.api.spec import ReasoningServiceSpec
from ponder_operator.autoscale import scaling_spec
from ponder_operator.policy.scaling import ScalingSpec
from ponder_operator.render import Owner, render_router_config
from ponder_operator.settings import OperatorSettings
from ponder_router.settings import RouterConfig

from .engine import ReplicaModel
from .errors import SimulationError
from .fleet import FleetDraw, FleetPolicy, ShrinkTrigger

NO_PREFILL_TOKENS_PER_SECOND = 1e12
"""The stand-in answers a prompt with no prefill time."""
TOLERANCE = 0.2
"""The cross-check passes when every judged figure is within 20 % of the live one."""


def replica_model(*, token_latency_ms: float, max_concurrency: int,
                  startup_seconds: float, gpus_per_replica: int = 1) -> ReplicaModel:  # fmt: skip
    """One stand-in Triton replica as the engine models it (module docstring)."""
    if token_latency_ms <= 0 or max_concurrency < 1 or startup_seconds < 0:
        raise SimulationError("token latency and concurrency must be positive, start-up "
                              "not negative")  # fmt: skip
    return ReplicaModel(
        single_sequence_tokens_per_second=1000.0 / token_latency_ms,
        half_rate_sequences=math.inf, max_sequences=max_concurrency,
        prefill_tokens_per_second=NO_PREFILL_TOKENS_PER_SECOND,
        startup_seconds=startup_seconds, gpus_per_replica=gpus_per_replica,
    )  # fmt: skip


@dataclass(frozen=True)
class ServiceSetup:
    """What the operator and the router make of one ReasoningService."""

    scaling: ScalingSpec
    policy: FleetPolicy
    interval_seconds: float


def service_setup(spec: ReasoningServiceSpec, name: str = "service") -> ServiceSetup:
    """The autoscaler's spec and the router's budget policy for ``spec``; shrinking at the
    replica ceiling, as the router does when the operator publishes ``atCeiling``."""
    router = RouterConfig.model_validate(
        render_router_config(Owner(name, "default", "-"), spec))
    policy = FleetPolicy(name, budget_policy=router.budgets, stop_rule=router.stopping,
                         shrink=ShrinkTrigger.CEILING,
                         answer_tokens=router.forcing.answer_tokens
                         if router.forcing.enabled else 0,
                         demand_learning=router.demand_learning,
                         load_horizon_seconds=router.capacity.horizon_seconds)  # fmt: skip
    return ServiceSetup(scaling_spec(spec, OperatorSettings()), policy,
                        float(spec.scaling.interval_seconds))  # fmt: skip


@dataclass(frozen=True)
class SampleOverhead:
    """Seconds a single-sample request takes beyond its tokens (module docstring)."""

    mean_seconds: float
    median_seconds: float
    seconds_per_token: float
    requests: int


def measure_sample_overhead(latencies_seconds: Sequence[float], tokens: Sequence[int],
                            token_latency_ms: float) -> SampleOverhead:  # fmt: skip
    """The residuals of single-sample requests' latency at the Theil-Sen slope against
    their tokens (the nominal ``token_latency_ms`` when the tokens do not vary), their mean
    and median, never below zero."""
    t = np.asarray(tokens, dtype=np.float64)
    y = np.asarray(latencies_seconds, dtype=np.float64)
    if len(t) != len(y) or len(t) < 2:
        raise SimulationError("the overhead needs at least two single-sample requests")
    i, j = np.triu_indices(len(t), k=1)
    spread = t[j] != t[i]
    if spread.any():
        slope = float(np.median((y[j] - y[i])[spread] / (t[j] - t[i])[spread]))
    else:
        slope = token_latency_ms / 1000.0
    residual = y - slope * t
    return SampleOverhead(max(0.0, float(np.mean(residual))),
                          max(0.0, float(np.median(residual))), slope, len(t))


def with_sample_overhead(draw: FleetDraw, overhead_seconds: float,
                         token_latency_ms: float) -> tuple[FleetDraw, int]:  # fmt: skip
    """``draw`` with every sample longer by the tokens the stand-in writes in
    ``overhead_seconds``, and that count of tokens."""
    extra = round(overhead_seconds * 1000.0 / token_latency_ms)
    tokens = tuple(tuple(t + extra for t in request) for request in draw.tokens)
    return replace(draw, tokens=tokens), extra


@dataclass(frozen=True)
class ReplicaStats:
    """A replica count over a window, as a step function held from each reading."""

    mean: float
    peak: float
    replica_seconds: float


def replica_stats(times_seconds: Sequence[float], replicas: Sequence[float],
                  end_seconds: float) -> ReplicaStats:  # fmt: skip
    """Time-weighted ``replicas`` from the first reading until ``end_seconds``; readings
    after the end are ignored, the last one before it holds until then."""
    t = np.asarray(times_seconds, dtype=np.float64)
    r = np.asarray(replicas, dtype=np.float64)
    keep = t < end_seconds
    t, r = t[keep], r[keep]
    if len(t) == 0:
        raise SimulationError("no replica readings before the end of the window")
    if np.any(np.diff(t) < 0):
        raise SimulationError("replica readings are not in time order")
    spans = np.diff(np.append(t, end_seconds))
    seconds = float(np.sum(spans * r))
    window = end_seconds - float(t[0])
    return ReplicaStats(seconds / window if window > 0 else float(r[-1]), float(r.max()), seconds)


@dataclass(frozen=True)
class Figures:
    """One run's figures, live or simulated; latency in seconds, counts per request."""

    ready_replicas: ReplicaStats
    desired_replicas: ReplicaStats
    requests: int
    answered: int
    mean_samples: float
    mean_tokens: float
    latency_p50_seconds: float
    latency_p99_seconds: float

    def flat(self) -> dict[str, float]:
        """Every figure by name (the replica ones as ``ready_mean``, ``desired_peak``...)."""
        out: dict[str, float] = {}
        for key, value in asdict(self).items():
            if isinstance(value, dict):
                prefix = key.removesuffix("_replicas")
                out.update({f"{prefix}_{k}": float(v) for k, v in value.items()})
            else:
                out[key] = float(value)
        return out


def mean_figures(runs: Sequence[Figures]) -> Figures:
    """Each figure's mean over ``runs`` (several live runs, or several sample draws)."""
    if not runs:
        raise SimulationError("no runs to average")

    def stats(name: str) -> ReplicaStats:
        values = [getattr(run, name) for run in runs]
        return ReplicaStats(*(float(np.mean([asdict(v)[k] for v in values]))
                              for k in ("mean", "peak", "replica_seconds")))  # fmt: skip

    def mean(name: str) -> float:
        return float(np.mean([getattr(run, name) for run in runs]))

    return Figures(stats("ready_replicas"), stats("desired_replicas"),
                   round(mean("requests")), round(mean("answered")), mean("mean_samples"),
                   mean("mean_tokens"), mean("latency_p50_seconds"),
                   mean("latency_p99_seconds"))  # fmt: skip


JUDGED = ("ready_mean", "ready_replica_seconds", "desired_mean", "desired_replica_seconds",
          "answered")
"""The figures the target names: replica counts and requests answered."""


def latency_percentiles(latencies_seconds: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 of the finite latencies (NaN when there are none)."""
    values = np.asarray(latencies_seconds, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def compare_figures(live: Figures, simulated: Figures) -> dict[str, dict[str, float | bool]]:
    """Per figure: the live and simulated values, their ratio (simulated / live) and, for
    the judged ones, whether the ratio is within ``TOLERANCE`` of 1."""
    rows: dict[str, dict[str, float | bool]] = {}
    sim = simulated.flat()
    for key, value in live.flat().items():
        ratio = sim[key] / value if value else (1.0 if sim[key] == value else math.inf)
        row: dict[str, float | bool] = {"live": value, "simulated": sim[key], "ratio": ratio}
        if key in JUDGED:
            row["within_tolerance"] = abs(ratio - 1.0) <= TOLERANCE
        rows[key] = row
    return rows


def format_comparison(rows: dict[str, dict[str, float | bool]]) -> str:
    """A side-by-side table of ``compare_figures``' rows; judged rows marked ``*``."""
    lines = [f"{'figure':<26}{'live':>12}{'simulated':>12}{'sim/live':>10}",
             "-" * 60]  # fmt: skip
    for key, row in rows.items():
        mark = "" if "within_tolerance" not in row else (" *" if row["within_tolerance"]
                                                          else " * OUT")  # fmt: skip
        lines.append(f"{key:<26}{row['live']:>12.2f}{row['simulated']:>12.2f}"
                     f"{row['ratio']:>10.2f}{mark}")  # fmt: skip
    return "\n".join(lines)
