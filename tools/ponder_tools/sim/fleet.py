"""The fleet: router, samples and pool in one simulated loop, so accuracy meets cost.

Role: a sibling of ``engine.simulate`` (which models a request's samples as a Binomial
draw and knows no answers). ``simulate_fleet`` replays a ``traces.Trace`` where every
request carries a problem from a real per-sample data set (``evaluation.dataset``) and is
decided, sample by sample, by the router's own ``plan.RequestPlan``:

- **Budget.** ``FleetPolicy.budget_for`` gives each request its ``Budget`` and ``StopRule``:
  fixed maj@N (``StopRule`` ``none``, one wave of N), Adaptive-Consistency (the ``beta``
  rule, one sample at a time), or a Ponder ``BudgetPolicy`` through the router's estimator
  and ``budgets.assign_budget`` (effort ``auto``), capped at the samples the data hold. With
  ``shrink`` other than ``off`` the budget sees the pool's load (``LoadState.from_demand``:
  the larger of the open demand over what the ready replicas serve in
  ``LOAD_HORIZON_SECONDS``, the live router's default ``capacity.horizonSeconds``, and the
  offered load over their throughput (``offered``, arrivals' unshrunk expected tokens
  averaged over the same horizon), at the ceiling when the pool is
  at ``max_replicas``, and with ``scale-up`` also scaling up while a replica it added is
  pending or starting), so load shrinking happens as it would live.
- **Samples.** A request's sample ``i`` is its problem's recorded sample ``order[i]`` (a
  seeded permutation, drawn once per request and shared by every policy). Its length is
  the data's tokens when the data have them (cut at the budget's cap, where it abstains,
  as ``plan.replay_request`` does); otherwise the trace request's generated tokens times a
  seeded per-sample factor in [0.75, 1.25] (so a request's samples do not finish in
  lockstep), clipped to the cap (a trace length says nothing about truncation).
- **Waves.** The plan's ``launch()`` gives the first wave on arrival and the next after
  every finished sample (``launch(1)`` when idle for the sequential baselines); samples
  finish when the pool has decoded their tokens, so the finishing order comes out of the
  simulation. At the stop, running samples are cancelled (charged the tokens they
  decoded) and queued ones dropped. The answer is ``plan.choose``'s.
- **Pool.** ``engine``'s replica model (continuous batching, processor sharing, start-up
  delay, Pending pods beyond ``gpu_capacity``, draining) with one difference: each sample
  is its own sequence in one FIFO of samples, placed on the ready replica with the most
  free slots (Triton behind a Service), not a request's samples all on one replica. The
  autoscaler is any ``engine.Autoscaler`` (Ponder's loop or the HPA from ``baselines``);
  its demand signal is ``demand.expected_remaining_tokens`` of every open request (its
  samples not started, and its running ones by the tokens they have written), as the
  router publishes it. Unless ``FleetPolicy.demand_learning`` turns it off (the router's
  default: on), a Ponder policy's demand model is learned from the requests it finished
  (``demand_learning.DemandLearner``, fed as the live executor feeds it), for the demand,
  the offered load and the load shrink.
- **Time and SLO.** A request's *queue wait* is the sum over its waves of the time from
  the wave's launch until its last sample got a slot; the SLO is met when that is at most
  ``slo_queue_wait_seconds``. Prefill (input tokens / prefill rate) is added once to time
  to first token and latency, as in ``engine``.

Not modelled (yet): escalation to another model, verifier calls, best-of-n scoring, a
deadline per request.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from ponder_router.aggregate import StopRule, StopRuleKind
from ponder_router.budgets import (
    Budget,
    BudgetPolicy,
    DemandModel,
    LoadState,
    Strategy,
    assign_budget,
    expected_request_tokens,
)
from ponder_router.demand import expected_remaining_tokens
from ponder_router.demand_learning import DemandLearner, DemandLearningConfig
from ponder_router.offered import OfferedLoad
from ponder_router.plan import RecordedSample, RequestPlan, replay_request
from ponder_router.settings import CapacityConfig
from ponder_tools.evaluation.dataset import EvalProblem

from .engine import DRAINING, PENDING, Autoscaler, Observation, Replay, Replica, SimConfig
from .errors import SimulationError
from .traces import Trace
from .workload import Workload

FIXED_MAX_TOKENS = 4096
"""Token cap per sample of the fixed and Adaptive-Consistency baselines (Ponder's hard tier)."""
TRACE_JITTER = (0.75, 1.25)
LOAD_HORIZON_SECONDS = CapacityConfig().horizon_seconds
"""Demand is compared with this much of the ready replicas' capacity, as the router does."""


class ShrinkTrigger(StrEnum):
    """When the fleet's router reports load to the budget policy (module docstring)."""

    OFF = "off"  # never: budgets see an idle pool
    CEILING = "ceiling"  # at the replica ceiling (the router's default)
    SCALE_UP = "scale-up"  # at the ceiling, and while scale-up is in flight


@dataclass(frozen=True)
class FleetPolicy:
    """How requests are budgeted: ``fixed_samples`` (maj@N), ``ac_threshold``
    (Adaptive-Consistency) or ``budget_policy`` (Ponder), exactly one of them."""

    name: str
    fixed_samples: int | None = None
    ac_threshold: float | None = None
    ac_max_samples: int = 16
    budget_policy: BudgetPolicy | None = None
    stop_rule: StopRule = field(default_factory=StopRule)
    shrink: ShrinkTrigger = ShrinkTrigger.OFF
    answer_tokens: int = 0
    """The router's forcing allowance (``forcing.answerTokens`` when forcing is on; 0 off):
    only its share of the published demand is modelled, not forced answers."""
    demand_learning: DemandLearningConfig = field(default_factory=DemandLearningConfig)
    """The router's ``demandLearning``: a Ponder policy's demand model learned from the
    requests it finished (``demand_learning.DemandLearner``), as the live router does."""
    load_horizon_seconds: float = LOAD_HORIZON_SECONDS
    """The router's ``capacity.horizonSeconds``: demand is compared with this much of the
    ready replicas' capacity, and the offered load averaged over as long."""
    offered_load: bool = True
    """Whether the load pressure counts the offered load (``offered``), as the router
    does; off: the open demand alone (the router before it did), for comparison."""

    def __post_init__(self) -> None:
        chosen = [self.fixed_samples is not None, self.ac_threshold is not None,
                  self.budget_policy is not None]  # fmt: skip
        if sum(chosen) != 1:
            raise SimulationError(f"policy {self.name}: give exactly one of fixed_samples, "
                                  "ac_threshold and budget_policy")  # fmt: skip

    @property
    def sequential(self) -> bool:
        """One sample at a time (Adaptive-Consistency), instead of the plan's waves."""
        return self.ac_threshold is not None

    def budget_for(self, problem: EvalProblem, load: LoadState,
                   demand: Mapping[str, DemandModel] | None = None,
                   ) -> tuple[Budget, StopRule]:  # fmt: skip
        """The request's budget and stopping rule; ``demand``: the learned demand models."""
        count = problem.sample_count
        if self.budget_policy is not None:
            estimate = self.budget_policy.feature_estimator().estimate(problem.question)
            budget = assign_budget(estimate, "auto", load, self.budget_policy,
                                   requested_max_samples=count, demand=demand,
                                   rule_bar=self.stop_rule.log_odds_bar())  # fmt: skip
            return budget, self.stop_rule
        if self.fixed_samples is not None:
            n = min(self.fixed_samples, count)
            rule = StopRule(kind=StopRuleKind.NEVER)
            wave = n
        else:
            n = min(self.ac_max_samples, count)
            rule = StopRule(kind=StopRuleKind.BETA, threshold=self.ac_threshold or 0.95)
            wave = 1
        budget = Budget(tier=self.name, strategy=Strategy.SINGLE if n == 1 else Strategy.VOTE,
                        max_tokens_per_sample=FIXED_MAX_TOKENS, max_samples=n,
                        wave_size=wave, expected_tokens=0.0)  # fmt: skip
        return budget.model_copy(update={"expected_tokens": expected_request_tokens(budget)}), rule


@dataclass(frozen=True)
class FleetDraw:
    """What every policy shares: each request's problem, sample order and sample lengths."""

    trace: Trace
    problems: tuple[EvalProblem, ...]
    problem: npt.NDArray[np.int64]  # [requests] index into problems
    order: tuple[tuple[int, ...], ...]  # per request: recorded sample for plan index i
    tokens: tuple[tuple[int, ...], ...]  # per request: tokens of plan index i (uncapped)
    data_tokens: bool  # lengths from the data (True) or from the trace

    def samples(self, request: int, budget: Budget) -> list[RecordedSample]:
        """Request's samples in plan-index order, each cut at its cap under ``budget``
        (``Budget.sample_max_tokens``) like ``replay_request``."""
        problem = self.problems[int(self.problem[request])]
        out = []
        for index, (position, tokens) in enumerate(zip(self.order[request],
                                                       self.tokens[request], strict=True)):
            answer, cap = problem.answer_keys[position], budget.sample_max_tokens(index)
            if tokens > cap:
                out.append(RecordedSample(None if self.data_tokens else answer, cap))
            else:
                out.append(RecordedSample(answer, tokens))
        return out


def draw_fleet(trace: Trace, problems: Sequence[EvalProblem], *, seed: int = 0,
               problem_index: Sequence[int] | None = None) -> FleetDraw:  # fmt: skip
    """Give every request of ``trace`` a problem (``problem_index``, or drawn), a sample
    order and sample lengths."""
    if not problems:
        raise SimulationError("draw_fleet needs at least one problem")
    rng = np.random.default_rng(seed)
    if problem_index is not None and len(problem_index) != trace.requests:
        raise SimulationError(f"{len(problem_index)} problems for {trace.requests} requests")
    pick = (rng.integers(0, len(problems), size=trace.requests) if problem_index is None
            else np.asarray(problem_index, dtype=np.int64))  # fmt: skip
    data_tokens = all(p.tokens is not None for p in problems)
    orders: list[tuple[int, ...]] = []
    lengths: list[tuple[int, ...]] = []
    for request, index in enumerate(pick.tolist()):
        problem = problems[index]
        order = rng.permutation(problem.sample_count)
        orders.append(tuple(order.tolist()))
        if problem.tokens is not None and data_tokens:
            lengths.append(tuple(max(1, problem.tokens[i]) for i in order.tolist()))
        else:
            factor = rng.uniform(*TRACE_JITTER, size=problem.sample_count)
            base = float(trace.output_tokens[request])
            lengths.append(tuple(max(1, round(base * f)) for f in factor.tolist()))
    return FleetDraw(trace, tuple(problems), pick.astype(np.int64), tuple(orders),
                     tuple(lengths), data_tokens)  # fmt: skip


def calibration_workload(draw: FleetDraw, policy: FleetPolicy) -> Workload:
    """The policy's work with no queueing (``replay_request``, idle load), as a
    ``workload.Workload``: what a load test would size the autoscalers' targets on."""
    count = draw.trace.requests
    sequences = np.zeros(count, dtype=np.int64)
    per_sequence = np.zeros(count, dtype=np.int64)
    expected = np.zeros(count)
    for request in range(count):
        problem = draw.problems[int(draw.problem[request])]
        budget, rule = policy.budget_for(problem, LoadState.idle())
        plan = RequestPlan(budget, rule, equality="exact")
        outcome = replay_request(plan, draw.samples(request, budget),
                                 waves=not policy.sequential)  # fmt: skip
        serial = 1 if policy.sequential else outcome.launched  # AC: one long sequence
        sequences[request] = serial
        per_sequence[request] = max(1, round(outcome.tokens / serial))
        expected[request] = budget.expected_tokens
    zeros = np.zeros(count, dtype=np.int64)
    return Workload(draw.trace, (policy.name,), zeros, np.zeros(count), sequences, per_sequence,
                    expected, per_sequence.astype(np.float64))  # fmt: skip


@dataclass(frozen=True)
class FleetResult:
    """One policy's fleet replay: per-request outcome arrays and the pool's GPU time."""

    policy: str
    autoscaler: str
    arrival_seconds: npt.NDArray[np.float64]
    wait_seconds: npt.NDArray[np.float64]
    ttft_seconds: npt.NDArray[np.float64]
    latency_seconds: npt.NDArray[np.float64]
    correct: npt.NDArray[np.bool_]
    samples: npt.NDArray[np.int64]  # launched per request
    tokens: npt.NDArray[np.float64]  # decoded per request, cancelled samples' part included
    shrunk: npt.NDArray[np.bool_]
    gpu_seconds: float
    end_seconds: float
    timeline: tuple[npt.NDArray[np.float64], ...]  # time, spec, gpu, ready, queued samples
    replay_wall_seconds: float
    demand_models: dict[str, DemandModel] = field(default_factory=dict)
    """Each tier's demand model learned by the end (empty: not a Ponder policy, or
    learning off)."""


class _Open:
    """One request in flight: its plan, samples and waits."""

    __slots__ = ("budget", "plan", "queued", "running", "samples", "wait", "wave_start")

    def __init__(self, budget: Budget, plan: RequestPlan, samples: list[RecordedSample]) -> None:
        self.budget, self.plan, self.samples = budget, plan, samples
        self.running: dict[int, tuple[Replica, float, int]] = {}  # index: (replica, start, id)
        self.queued = 0
        self.wave_start = 0.0
        self.wait = 0.0


class _FleetReplay(Replay):
    """``engine.Replay`` with samples as sequences, decided by each request's plan."""

    whole_requests = False  # each sample finds its own slot

    def __init__(self, draw: FleetDraw, policy: FleetPolicy, autoscaler: Autoscaler,
                 config: SimConfig, workload: Workload, max_replicas: int) -> None:  # fmt: skip
        super().__init__(workload, autoscaler, config)
        self.draw, self.policy, self.max_replicas = draw, policy, max_replicas
        self.open: dict[int, _Open] = {}
        self.sample_queue: deque[tuple[int, int]] = deque()  # (request, plan index)
        self.sample_owner: dict[int, tuple[int, int]] = {}  # sample id: (request, index)
        self.next_sample = 0
        count = draw.trace.requests
        self.first_start = np.full(count, np.nan)
        self.correct = np.zeros(count, dtype=bool)
        self.launched = np.zeros(count, dtype=np.int64)
        self.spent = np.zeros(count)
        self.shrunk = np.zeros(count, dtype=bool)
        self.wait_total = np.full(count, np.nan)
        self.capacity_tokens_per_second = config.replica.replica_tokens_per_second(
            0.75 * config.replica.max_sequences)
        ponder = policy.budget_policy
        self.learner = (DemandLearner(ponder.demand_model, policy.demand_learning)
                        if ponder is not None and policy.demand_learning.enabled
                        else None)  # fmt: skip
        self.offered = OfferedLoad(policy.load_horizon_seconds)
        self.now = 0.0

    # -- the router ---------------------------------------------------------------------

    def load(self) -> LoadState:
        trigger = self.policy.shrink
        if trigger is ShrinkTrigger.OFF:
            return LoadState.idle()
        spec = sum(1 for r in self.replicas if r.state != DRAINING)
        adding = spec > len(self.ready)  # pending or starting replicas
        return LoadState.from_demand(
            demand_tokens=self.open_demand(), horizon_seconds=self.policy.load_horizon_seconds,
            capacity_tokens_per_second=len(self.ready) * self.capacity_tokens_per_second,
            at_ceiling=spec >= self.max_replicas,
            scaling_up=trigger is ShrinkTrigger.SCALE_UP and adding,
            offered_tokens_per_second=self.offered.tokens_per_second(self.now))  # fmt: skip

    def open_demand(self) -> float:
        """The router's demand gauge; a running sample's tokens as of its replica's last
        event."""
        policy = self.policy.budget_policy
        model = policy.demand_model if policy is not None else DemandModel()
        learned = self.learner.models() if self.learner is not None else {}
        total = 0.0
        for o in self.open.values():
            written = sum(replica.virtual - start for replica, start, _ in o.running.values())
            total += expected_remaining_tokens(
                o.budget, learned.get(o.budget.tier, model),
                samples_finished=len(o.plan.finished),
                running_samples=len(o.running), running_tokens=written,
                answer_tokens=self.policy.answer_tokens)  # fmt: skip
        return total

    def arrive(self, index: int) -> None:
        now = self.arrival[index]
        problem = self.draw.problems[int(self.draw.problem[index])]
        learned = self.learner.models() if self.learner is not None else None
        self.now = now
        budget, rule = self.policy.budget_for(problem, self.load(), learned)
        if self.policy.offered_load:
            self.offered.offer(now, budget, lambda: self.policy.budget_for(
                problem, LoadState.idle(), learned)[0])  # fmt: skip
        plan = RequestPlan(budget, rule, equality="exact")
        request = _Open(budget, plan, self.draw.samples(index, budget))
        self.open[index] = request
        self.shrunk[index] = budget.shrunk
        self.inflight_requests += 1
        self.launch(index, plan.launch(1) if self.policy.sequential else plan.launch(), now)
        self.dispatch(now)

    def launch(self, index: int, wave: range, now: float) -> None:
        request = self.open[index]
        if len(wave) and request.queued == 0:
            request.wave_start = now
        for position in wave:
            if position >= len(request.samples):
                raise SimulationError(f"request {index} launched sample {position} of "
                                      f"{len(request.samples)}")  # fmt: skip
            self.sample_queue.append((index, position))
            request.queued += 1
        self.launched[index] = request.plan.launched + request.plan.failed

    def dispatch(self, now: float) -> None:
        queue, limit = self.sample_queue, self.model.max_sequences
        while queue:
            index, position = queue[0]
            request = self.open.get(index)
            if request is None:  # the request stopped before this sample started
                queue.popleft()
                continue
            best: Replica | None = None
            most_free = 0
            for replica in self.ready:
                if limit - replica.sequences > most_free:
                    best, most_free = replica, limit - replica.sequences
            if best is None:
                return
            queue.popleft()
            self.advance(best, now)
            sample_id = self.next_sample
            self.next_sample += 1
            self.sample_owner[sample_id] = (index, position)
            best.sequences += 1
            tokens = request.samples[position].tokens
            heapq.heappush(best.finishing, (best.virtual + tokens, sample_id))
            request.running[position] = (best, best.virtual, sample_id)
            request.queued -= 1
            if request.queued == 0:
                request.wait += now - request.wave_start
            if np.isnan(self.first_start[index]):
                self.first_start[index] = now
            self.inflight_sequences += 1
            self.reschedule(best, now)

    def complete(self, replica: Replica, now: float) -> None:
        self.advance(replica, now)
        finishing = replica.finishing
        horizon = replica.virtual + 1e-6 * max(1.0, replica.virtual)
        touched = {id(replica): replica}
        while finishing and finishing[0][0] <= horizon:
            _, sample_id = heapq.heappop(finishing)
            index, position = self.sample_owner.pop(sample_id)
            replica.sequences -= 1
            self.inflight_sequences -= 1
            request = self.open[index]
            del request.running[position]
            sample = request.samples[position]
            self.spent[index] += sample.tokens
            request.plan.finish(position, sample.answer, sample.tokens)
            request.plan.decide()
            if request.plan.stopped:
                self.close(index, now, touched)
            else:
                sequential = self.policy.sequential
                wave = request.plan.launch(1 if request.plan.running == 0 else 0) \
                    if sequential else request.plan.launch()  # fmt: skip
                self.launch(index, wave, now)
                if request.plan.running == 0:
                    raise SimulationError(f"request {index}: the plan left nothing running")
        for other in touched.values():
            self.reschedule(other, now)
            if other.state == DRAINING and other.sequences == 0:
                self.terminate(other, now)
        self.dispatch(now)

    def close(self, index: int, now: float, touched: dict[int, Replica]) -> None:
        """The plan stopped: cancel what runs, answer, and record the request."""
        request = self.open.pop(index)
        for replica, start, sample_id in request.running.values():
            self.advance(replica, now)
            replica.finishing[:] = [e for e in replica.finishing if e[1] != sample_id]
            heapq.heapify(replica.finishing)
            replica.sequences -= 1
            self.inflight_sequences -= 1
            self.sample_owner.pop(sample_id)
            self.spent[index] += replica.virtual - start
            touched[id(replica)] = replica
        if request.queued:
            request.wait += now - request.wave_start
        plan = request.plan
        if self.learner is not None:
            self.learner.observe(plan)
        choice = plan.choose(None)
        problem = self.draw.problems[int(self.draw.problem[index])]
        self.correct[index] = plan.finished[choice.position].answer == problem.reference_key
        self.done[index] = now
        self.wait_total[index] = request.wait
        self.completed += 1
        self.inflight_requests -= 1

    def observe(self) -> Observation:
        waiting = sum(1 for i in self.open if np.isnan(self.first_start[i]))
        return Observation(
            queued_requests=waiting, inflight_requests=len(self.open) - waiting,
            inflight_sequences=self.inflight_sequences, demand_tokens=self.open_demand(),
            spec_replicas=sum(1 for r in self.replicas if r.state != DRAINING),
            ready_replicas=len(self.ready),
            pending_unschedulable_replicas=sum(1 for r in self.replicas if r.state == PENDING),
        )  # fmt: skip

    def record(self, now: float) -> None:
        spec = sum(1 for r in self.replicas if r.state != DRAINING)
        self.records.append((now, spec, self.gpu_replicas, len(self.ready),
                             len(self.sample_queue)))  # fmt: skip

    def fleet_result(self, wall_seconds: float, now: float) -> FleetResult:
        trace = self.draw.trace
        prefill = trace.input_tokens / self.model.prefill_tokens_per_second
        table = np.array(self.records, dtype=np.float64).reshape(-1, 5)
        return FleetResult(
            policy=self.policy.name, autoscaler=self.autoscaler.name,
            arrival_seconds=trace.arrival_seconds, wait_seconds=self.wait_total,
            ttft_seconds=self.first_start - trace.arrival_seconds + prefill,
            latency_seconds=self.done - trace.arrival_seconds + prefill,
            correct=self.correct, samples=self.launched, tokens=self.spent, shrunk=self.shrunk,
            gpu_seconds=self.gpu_seconds, end_seconds=now,
            timeline=tuple(table[:, i] for i in range(5)), replay_wall_seconds=wall_seconds,
            demand_models=self.learner.models() if self.learner is not None else {},
        )  # fmt: skip


def simulate_fleet(draw: FleetDraw, policy: FleetPolicy, autoscaler: Autoscaler,
                   config: SimConfig, *, workload: Workload | None = None,
                   max_replicas: int = 64) -> FleetResult:  # fmt: skip
    """Replay ``draw`` with ``policy`` deciding samples and ``autoscaler`` the pool."""
    wall = time.perf_counter()
    workload = workload or calibration_workload(draw, policy)
    replay = _FleetReplay(draw, policy, autoscaler, config, workload, max_replicas)
    replay.run()
    return replay.fleet_result(time.perf_counter() - wall, replay.accounted)



@dataclass(frozen=True)
class FleetSummary:
    """The figures one policy is judged on (accuracy in [0, 1], latency in seconds)."""

    policy: str
    autoscaler: str
    requests: int
    answered: int
    accuracy: float
    latency_p50_seconds: float
    latency_p99_seconds: float
    ttft_p99_seconds: float
    slo_attainment: float
    wait_p99_seconds: float
    max_queued_samples: int
    gpu_hours: float
    tail_gpu_hours: float
    """Of ``gpu_hours``, those after the last arrival: the pool held for the stragglers."""
    cost_usd: float
    usd_per_1k_correct: float
    mean_samples: float
    mean_tokens: float
    shrunk_share: float
    replay_wall_seconds: float

    def as_dict(self) -> dict[str, float | int | str]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def summarize_fleet(result: FleetResult, *, gpu_hourly_price: float,
                    slo_queue_wait_seconds: float) -> FleetSummary:  # fmt: skip
    """``result``'s figures; a request never answered counts as wrong and an SLO miss."""
    answered = ~np.isnan(result.latency_seconds)
    correct = int(np.count_nonzero(result.correct & answered))
    cost = result.gpu_seconds / 3600.0 * gpu_hourly_price

    def pct(values: npt.NDArray[np.float64], q: float) -> float:
        finite = values[~np.isnan(values)]
        return float(np.percentile(finite, q)) if len(finite) else float("nan")

    requests = len(result.correct)
    met = np.nan_to_num(result.wait_seconds, nan=np.inf) <= slo_queue_wait_seconds
    return FleetSummary(
        policy=result.policy, autoscaler=result.autoscaler, requests=requests,
        answered=int(answered.sum()), accuracy=correct / max(requests, 1),
        latency_p50_seconds=pct(result.latency_seconds, 50),
        latency_p99_seconds=pct(result.latency_seconds, 99),
        ttft_p99_seconds=pct(result.ttft_seconds, 99),
        slo_attainment=float(met.mean()) if requests else 1.0,
        wait_p99_seconds=pct(result.wait_seconds, 99),
        max_queued_samples=int(result.timeline[4].max(initial=0)),
        gpu_hours=result.gpu_seconds / 3600.0, cost_usd=cost,
        tail_gpu_hours=_gpu_hours_after(result, float(result.arrival_seconds.max(initial=0.0))),
        usd_per_1k_correct=1000.0 * cost / correct if correct else float("inf"),
        mean_samples=float(result.samples.mean()) if requests else 0.0,
        mean_tokens=float(result.tokens.mean()) if requests else 0.0,
        shrunk_share=float(result.shrunk.mean()) if requests else 0.0,
        replay_wall_seconds=result.replay_wall_seconds,
    )  # fmt: skip


def _gpu_hours_after(result: FleetResult, start_seconds: float) -> float:
    """GPU-hours the pool held after ``start_seconds`` (from the recorded timeline)."""
    times, gpus = result.timeline[0], result.timeline[2]
    ends = np.append(times[1:], result.end_seconds)
    after = np.clip(ends - np.maximum(times, start_seconds), 0.0, None)
    return float((gpus * after).sum()) / 3600.0


def format_fleet_table(summaries: Sequence[FleetSummary]) -> str:
    """One fixed-width row per policy."""
    header = (f"{'policy':<42}{'scaler':<8}{'acc %':>7}{'answered':>9}{'lat p50':>8}"
              f"{'lat p99':>8}{'SLO %':>7}{'GPU-h':>7}{'tail h':>7}{'cost $':>8}{'$/1k ok':>9}"
              f"{'samples':>8}{'tokens':>8}{'shrunk%':>8}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for s in summaries:
        lines.append(
            f"{s.policy:<42}{s.autoscaler:<8}{100 * s.accuracy:>7.1f}{s.answered:>9}"
            f"{s.latency_p50_seconds:>8.1f}{s.latency_p99_seconds:>8.1f}"
            f"{100 * s.slo_attainment:>7.1f}{s.gpu_hours:>7.2f}{s.tail_gpu_hours:>7.2f}"
            f"{s.cost_usd:>8.2f}"
            f"{s.usd_per_1k_correct:>9.2f}{s.mean_samples:>8.2f}{s.mean_tokens:>8.0f}"
            f"{100 * s.shrunk_share:>8.1f}")
    return "\n".join(lines)


def format_quota_rows(summaries: Sequence[FleetSummary]) -> str:
    """The blow-up figures of Ponder's default policy and of the quota runs: queue wait
    p99, the longest sample queue, latency p50/p99 and SLO attainment."""
    lines = []
    for s in summaries:
        if "-quota" in s.policy or (s.policy, s.autoscaler) == ("ponder-default", "ponder"):
            lines.append(f"  {s.policy:<42}acc {100 * s.accuracy:5.1f} %  SLO "
                         f"{100 * s.slo_attainment:5.1f} %  wait p99 {s.wait_p99_seconds:6.1f} s"
                         f"  max queue {s.max_queued_samples:5d} samples  latency p50/p99 "
                         f"{s.latency_p50_seconds:5.1f}/{s.latency_p99_seconds:5.1f} s  "
                         f"samples {s.mean_samples:5.2f}")  # fmt: skip
    return "\n".join(lines)
