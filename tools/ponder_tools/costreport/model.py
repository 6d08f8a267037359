"""Cost report figures from usage series: pure functions, no I/O, no clock.

Role: the middle of ``ponder cost report``. ``query`` reads the series from Prometheus
into ``ReportInputs``; ``compute_report`` turns them into grouped ``Figures``; ``cli``,
``focus`` and ``html`` format the ``Report``. The period is cut into equal steps; every
series holds one value per step, the step ``(end - step, end]`` (see ``Period``).

What each figure means (``DEFINITIONS`` carries the same text into every report):

- **GPU-hours**: the increase of ``ponder_gpu_seconds_total`` (ready Triton replicas x
  GPUs per replica, accounted by the operator) / 3600.
- **Cost**: the increase of ``ponder_cost_total`` (USD, at the price the operator used),
  or with a price table (``price_inputs``) GPU-hours x the table's price for the series'
  ``gpu_type``. A service with GPU time and no price is an error, never a zero.
- **Idle**: GPU time held while the service's routers reported
  ``ponder_router_demand_tokens`` = 0: the increase of the operator's
  ``ponder_idle_gpu_seconds_total`` (accounted every autoscaler tick from the demand it
  read, fresh reads only), or, for a service whose operator does not export it, sampled
  from ``ponder_ready_gpus`` and the demand every ``resolution_seconds`` (each sample
  stands for the interval that ends at it). Capped at the GPU time of its step; its cost
  is at the step's price. Unknown load (no demand series, a stale read) is never idle.
- **Per request / per token**: cost of the services with router metrics divided by
  their requests (``ponder_router_requests_total``, all outcomes) x 1,000 and by their
  generated tokens (``ponder_router_used_tokens_total``) x 1,000,000.
- **Tiers**: a service's GPU time and cost (idle included) are split over its difficulty
  tiers in proportion to the tokens each tier generated in the period.
- **Fixed-budget counterfactual**: what the same requests would have cost had each been
  given the top tier's budget. The top tier is the tier with the largest mean budget per
  request (``ponder_router_budget_tokens_total`` / requests) among the tiers that served
  requests in the period; a request given its budget generates, on average, the top
  tier's measured tokens per request (used / requests). Counterfactual tokens = requests
  x that mean; the tokens are priced at the service's measured cost per generated token
  (cost / used tokens), that is, GPU cost is taken to scale with generated tokens.
  Savings = counterfactual cost - actual cost (negative when the budgets cost more).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta

from ponder_operator.errors import PonderOperatorError
from ponder_operator.policy.cost import SECONDS_PER_HOUR, PriceTable, PricingError

# -- errors ---------------------------------------------------------------------------------


class CostReportError(PonderOperatorError):
    """Base of the cost report's errors; the message is one line a person can act on.

    CostReportError
    ├── ReportInputError       bad arguments: period, group-by, step (exit 2)
    ├── MissingPriceError      a GPU type has no price, or a service no cost (exit 2)
    ├── PrometheusQueryError   Prometheus unreachable or a query refused (exit 1)
    └── EmptyPeriodError       no Ponder series in the period (exit 1)
    """

    exit_code = 1


class ReportInputError(CostReportError, ValueError):
    exit_code = 2


class MissingPriceError(CostReportError, LookupError):
    exit_code = 2


class PrometheusQueryError(CostReportError):
    exit_code = 1


class EmptyPeriodError(CostReportError):
    exit_code = 1


DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("GPU-hours", "increase of ponder_gpu_seconds_total (ready replicas x GPUs) / 3600"),
    ("Cost", "increase of ponder_cost_total (USD, the operator's price), or GPU-hours x "
             "the price table's price per GPU-hour of the series' gpu_type"),
    ("Idle", "GPU time held while the routers' ponder_router_demand_tokens was 0: the "
             "operator's ponder_idle_gpu_seconds_total, else sampled from ponder_ready_gpus "
             "every resolution step; unknown load (no or stale demand) is never idle"),
    ("Per 1k requests / 1M tokens", "cost of services with router metrics / their requests "
                                    "x 1,000 and / their generated tokens x 1,000,000"),
    ("Tiers", "a service's GPU time and cost are split over its difficulty tiers in "
              "proportion to the tokens each tier generated"),
    ("Fixed-budget cost", "the same requests, each given the top tier's budget: requests x "
                          "the top tier's measured tokens per request, priced at the "
                          "service's cost per generated token; the top tier has the largest "
                          "budget per request among tiers that served requests"),
    ("Savings", "fixed-budget cost - actual cost"),
)

# -- period -----------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
STEP_CANDIDATES_SECONDS = (60, 300, 900, 3600, 6 * 3600, 86400)
MAX_STEPS = 200


def parse_duration_seconds(text: str) -> int:
    """Seconds in a Prometheus-style duration: ``90s``, ``15m``, ``1h30m``, ``7d``, ``2w``."""
    value = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value) or total <= 0 or total != int(total):
        raise ReportInputError(
            f"bad duration {text!r}: use a whole number of seconds like 90s, 15m, 6h, 7d")
    return int(total)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (``2025-01-06T00:00:00Z``; an offset is required)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise ReportInputError(
            f"bad time {text!r}: use RFC 3339, e.g. 2025-01-06T00:00:00Z") from exc
    if moment.tzinfo is None:
        raise ReportInputError(f"bad time {text!r}: give a UTC offset or Z (RFC 3339)")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Period:
    """The report's period ``(start, end]`` in ``steps`` equal steps of ``step_seconds``.

    ``resolution_seconds`` is the sampling interval of the idle measurement; it divides
    the step. Step ``i`` covers ``(start + i*step, start + (i+1)*step]``.
    """

    start: datetime
    end: datetime
    step_seconds: int
    resolution_seconds: int

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def steps(self) -> int:
        return self.seconds // self.step_seconds

    def step_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.step_seconds)

    def step_end(self, index: int) -> datetime:
        return self.step_start(index + 1)


def resolve_period(
    *, now: datetime, since: str | None = None, start: str | None = None,
    end: str | None = None, step: str | None = None, resolution: str = "1m",
) -> Period:
    """The ``Period`` for ``--since`` (ending at ``now``) or ``--start``/``--end``.

    ``--since`` ends the period at ``now`` rounded down to the resolution. Without
    ``step``, the step is the smallest of 1m, 5m, 15m, 1h, 6h, 1d that divides the period
    into at most ``MAX_STEPS`` steps.
    """
    resolution_seconds = parse_duration_seconds(resolution)
    if since is not None and (start is not None or end is not None):
        raise ReportInputError("give either --since or --start/--end, not both")
    if since is not None:
        stamp = math.floor(now.timestamp() / resolution_seconds) * resolution_seconds
        period_end = datetime.fromtimestamp(stamp, UTC)
        period_start = period_end - timedelta(seconds=parse_duration_seconds(since))
    elif start is not None:
        period_start = parse_time(start)
        period_end = parse_time(end) if end is not None else now.astimezone(UTC)
    else:
        raise ReportInputError("give the period: --since 7d, or --start (and --end)")
    seconds = (period_end - period_start).total_seconds()
    if seconds <= 0:
        raise ReportInputError(
            f"empty period: --start {period_start:%Y-%m-%dT%H:%M:%SZ} is not before "
            f"--end {period_end:%Y-%m-%dT%H:%M:%SZ}")
    if seconds % resolution_seconds:
        raise ReportInputError(
            f"the period ({seconds:g} s) is not a whole number of resolution steps "
            f"({resolution_seconds} s): align --start/--end to the minute")
    total = int(seconds)
    if step is not None:
        step_seconds = parse_duration_seconds(step)
        if total % step_seconds or step_seconds % resolution_seconds:
            raise ReportInputError(
                f"--step {step} must divide the period ({total} s) and be a multiple of "
                f"--resolution {resolution}")
    else:
        fitting = [c for c in STEP_CANDIDATES_SECONDS
                   if c % resolution_seconds == 0 and total % c == 0]
        few = [c for c in fitting if total // c <= MAX_STEPS]
        step_seconds = min(few) if few else max(fitting, default=resolution_seconds)
    return Period(period_start, period_end, step_seconds, resolution_seconds)


# -- inputs -------------------------------------------------------------------------------------

COST_LABELS = ("team", "department", "env", "owner", "app")
GROUP_DIMENSIONS = ("namespace", "service", *COST_LABELS, "gpu_type", "tier")
_GROUP_ALIASES = {"gpu-type": "gpu_type", "gputype": "gpu_type", "gpu": "gpu_type",
                  "difficulty": "tier", "ns": "namespace", "reasoningservice": "service"}
NO_ROUTER_TIER = "(no router data)"
NO_TOKENS_TIER = "(no tokens)"


def parse_group_by(text: str) -> tuple[str, ...]:
    """``namespace,team,tier`` → dimensions; ``label:team`` and ``gpu-type`` also work."""
    dims: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        name = name.removeprefix("label:").removeprefix("label.")
        name = _GROUP_ALIASES.get(name, name)
        if name not in GROUP_DIMENSIONS:
            raise ReportInputError(
                f"unknown --group-by {raw.strip()!r}: choose from {', '.join(GROUP_DIMENSIONS)}")
        if name not in dims:
            dims.append(name)
    if not dims:
        raise ReportInputError(f"--group-by is empty: choose from {', '.join(GROUP_DIMENSIONS)}")
    return tuple(dims)


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One label set of the operator's cost series (a service, its GPU type and labels)."""

    namespace: str
    service: str
    gpu_type: str = ""
    team: str = ""
    department: str = ""
    env: str = ""
    owner: str = ""
    app: str = ""

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> SeriesKey:
        return cls(**{f.name: labels.get(f.name, "") for f in fields(cls)})

    @property
    def service_id(self) -> str:
        return f"{self.namespace}/{self.service}"

    def tags(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in COST_LABELS if getattr(self, name)}


@dataclass(frozen=True)
class UsageSeries:
    """GPU time, cost and idle GPU time of one label set, one value per step."""

    key: SeriesKey
    gpu_seconds: tuple[float, ...]
    cost: tuple[float, ...] | None  # USD; None: no ponder_cost_total; NaN: none in that step
    idle_gpu_seconds: tuple[float, ...]
    idle_sampled: bool = False  # from ready GPUs and router demand, not the operator's counter


@dataclass(frozen=True)
class TierSeries:
    """A router's counters for one difficulty tier, one value per step.

    ``namespace`` is "" when the router's series carry none (a static scrape): it then
    stands for the service of that name in any namespace.
    """

    namespace: str
    service: str
    tier: str
    requests: tuple[float, ...]
    used_tokens: tuple[float, ...]
    budget_tokens: tuple[float, ...]


@dataclass(frozen=True)
class ReportInputs:
    period: Period
    usage: tuple[UsageSeries, ...]
    tiers: tuple[TierSeries, ...] = ()
    priced_from: str = "ponder_cost_total"


def price_inputs(
    inputs: ReportInputs, table: PriceTable, *, cloud: str, offering: str,
) -> ReportInputs:
    """Every series' cost = its GPU-hours x ``table``'s price of its ``gpu_type``.

    A GPU type missing from the table raises ``MissingPriceError`` naming it.
    """
    priced: list[UsageSeries] = []
    for series in inputs.usage:
        try:
            price = table.lookup(cloud, series.key.gpu_type, offering)
        except PricingError as exc:
            raise MissingPriceError(
                f"price table: {exc} (service {series.key.service_id})") from exc
        cost = tuple(s / SECONDS_PER_HOUR * price for s in series.gpu_seconds)
        priced.append(replace(series, cost=cost))
    return replace(inputs, usage=tuple(priced), priced_from=f"price table ({cloud} {offering})")


def check_inputs(inputs: ReportInputs) -> None:
    """Refuse an empty period and services with GPU time but no cost: never a silent zero."""
    period = inputs.period
    if not inputs.usage:
        raise EmptyPeriodError(
            f"no ponder_gpu_seconds_total series between {period.start:%Y-%m-%dT%H:%M:%SZ} "
            f"and {period.end:%Y-%m-%dT%H:%M:%SZ}: nothing to report (is the operator "
            f"scraped, and the period right?)")
    unpriced = sorted({s.key.service_id for s in inputs.usage if _unpriced_steps(s)})
    if unpriced:
        shown = ", ".join(unpriced[:5]) + (", ..." if len(unpriced) > 5 else "")
        raise MissingPriceError(
            f"{len(unpriced)} service(s) held GPUs with no ponder_cost_total (no price "
            f"configured) for all or part of the period: {shown}; pass --pricing FILE to "
            f"price them from a table")


def _unpriced_steps(series: UsageSeries) -> list[int]:
    """Steps in which the series held GPUs but has no cost."""
    return [i for i, gpu in enumerate(series.gpu_seconds)
            if gpu > 0 and (series.cost is None or math.isnan(series.cost[i]))]


# -- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Additive totals of a group; ratios are properties (None where undefined)."""

    gpu_hours: float = 0.0
    cost: float = 0.0
    idle_gpu_hours: float = 0.0
    idle_cost: float = 0.0
    requests: float = 0.0
    used_tokens: float = 0.0
    budget_tokens: float = 0.0
    fixed_budget_tokens: float = 0.0
    metered_cost: float = 0.0  # cost of services with router metrics
    savings: float = 0.0

    def __add__(self, other: Figures) -> Figures:
        return Figures(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                          for f in fields(self)})

    def scaled(self, factor: float) -> Figures:
        return Figures(**{f.name: getattr(self, f.name) * factor for f in fields(self)})

    @property
    def idle_share(self) -> float | None:
        return self.idle_cost / self.cost if self.cost > 0 else None

    @property
    def cost_per_1k_requests(self) -> float | None:
        return self.metered_cost / self.requests * 1000 if self.requests > 0 else None

    @property
    def cost_per_1m_tokens(self) -> float | None:
        return self.metered_cost / self.used_tokens * 1e6 if self.used_tokens > 0 else None

    @property
    def fixed_budget_cost(self) -> float:
        return self.metered_cost + self.savings

    @property
    def savings_share(self) -> float | None:
        fixed = self.fixed_budget_cost
        return self.savings / fixed if fixed > 0 else None


@dataclass(frozen=True)
class Row:
    """One group: its dimension values (in ``group_by`` order) and figures."""

    group: tuple[str, ...]
    figures: Figures


@dataclass(frozen=True)
class Charge:
    """One label set's figures in one step: a row of the FOCUS export."""

    key: SeriesKey
    start: datetime
    end: datetime
    figures: Figures


@dataclass(frozen=True)
class ServiceTiers:
    """How one service's router figures were read: its top tier and cost per token."""

    service_id: str
    top_tier: str | None
    top_tier_tokens_per_request: float | None
    cost_per_token: float | None


@dataclass(frozen=True)
class Report:
    period: Period
    group_by: tuple[str, ...]
    rows: tuple[Row, ...]
    total: Figures
    by_tier: tuple[Row, ...]
    cost_over_time: tuple[tuple[str, tuple[float, ...]], ...]  # (service id, cost per step)
    actual_over_time: tuple[float, ...]  # metered cost per step
    fixed_budget_over_time: tuple[float, ...]  # fixed-budget cost per step
    charges: tuple[Charge, ...]
    services: tuple[ServiceTiers, ...]
    warnings: tuple[str, ...] = ()
    priced_from: str = "ponder_cost_total"


@dataclass
class _Cell:
    key: SeriesKey
    tier: str
    figures: Figures

    def dim(self, name: str) -> str:
        return self.tier if name == "tier" else str(getattr(self.key, name))


@dataclass
class _Service:
    """Working set of one (namespace, service): its label sets and its router tiers."""

    usage: list[UsageSeries] = field(default_factory=list)
    tiers: list[TierSeries] = field(default_factory=list)


def _zeros(n: int) -> list[float]:
    return [0.0] * n


def _top_tier(tiers: Sequence[TierSeries]) -> tuple[str | None, float | None]:
    """The tier with the largest budget per request among those with requests, and its
    measured generated tokens per request."""
    best: tuple[float, float, str] | None = None
    for t in tiers:
        requests = sum(t.requests)
        if requests <= 0:
            continue
        candidate = (sum(t.budget_tokens) / requests, sum(t.used_tokens) / requests, t.tier)
        if best is None or candidate > best:
            best = candidate
    if best is None:
        return None, None
    return best[2], best[1]


def _merge_tiers(tiers: Iterable[TierSeries]) -> list[TierSeries]:
    """One series per tier name (routers of one service may be scraped as several)."""
    merged: dict[str, TierSeries] = {}
    for t in tiers:
        if t.tier in merged:
            m = merged[t.tier]
            merged[t.tier] = replace(
                m, requests=tuple(map(sum, zip(m.requests, t.requests, strict=True))),
                used_tokens=tuple(map(sum, zip(m.used_tokens, t.used_tokens, strict=True))),
                budget_tokens=tuple(map(sum, zip(m.budget_tokens, t.budget_tokens,
                                                 strict=True))))
        else:
            merged[t.tier] = t
    return [merged[name] for name in sorted(merged)]


def _services(inputs: ReportInputs) -> dict[tuple[str, str], _Service]:
    services: dict[tuple[str, str], _Service] = defaultdict(_Service)
    for series in inputs.usage:
        services[(series.key.namespace, series.key.service)].usage.append(series)
    by_key: dict[tuple[str, str], list[TierSeries]] = defaultdict(list)
    for t in inputs.tiers:
        by_key[(t.namespace, t.service)].append(t)
    for (namespace, name), service in services.items():
        found = by_key.get((namespace, name)) or by_key.get(("", name)) or []
        service.tiers = _merge_tiers(found)
    return services


def _service_cells(
    service: _Service, steps: int,
) -> tuple[list[_Cell], list[list[Figures]], ServiceTiers, list[str]]:
    """Cells per (label set, tier) and per-step figures per label set, for one service."""
    warnings: list[str] = []
    usage = service.usage
    service_id = usage[0].key.service_id
    gpu_totals = [sum(u.gpu_seconds) for u in usage]
    all_gpu = sum(gpu_totals)
    weights = [g / all_gpu if all_gpu > 0 else 1 / len(usage) for g in gpu_totals]
    tiers = service.tiers
    used_by_tier = {t.tier: sum(t.used_tokens) for t in tiers}
    used_total = sum(used_by_tier.values())
    top_tier, top_mean = _top_tier(tiers)
    if not tiers:
        warnings.append(f"{service_id}: no router metrics (requests, tokens) in the period")
    cells: list[_Cell] = []
    per_step: list[list[Figures]] = []
    service_cost = 0.0
    for series, weight in zip(usage, weights, strict=True):
        cost = tuple(0.0 if math.isnan(c) else c for c in (series.cost or _zeros(steps)))
        cost_total = sum(cost)
        service_cost += cost_total
        tokens = used_total * weight
        cost_per_token = cost_total / tokens if tokens > 0 else None
        step_figures: list[Figures] = []
        for i in range(steps):
            gpu, step_cost = series.gpu_seconds[i], cost[i]
            idle = min(max(series.idle_gpu_seconds[i], 0.0), gpu)
            idle_cost = idle / gpu * step_cost if gpu > 0 else 0.0
            requests = sum(t.requests[i] for t in tiers) * weight
            used = sum(t.used_tokens[i] for t in tiers) * weight
            budget = sum(t.budget_tokens[i] for t in tiers) * weight
            fixed = requests * top_mean if top_mean is not None else used
            savings = (fixed - used) * cost_per_token if cost_per_token is not None else 0.0
            step_figures.append(Figures(
                gpu_hours=gpu / SECONDS_PER_HOUR, cost=step_cost,
                idle_gpu_hours=idle / SECONDS_PER_HOUR, idle_cost=idle_cost,
                requests=requests, used_tokens=used, budget_tokens=budget,
                fixed_budget_tokens=fixed, metered_cost=step_cost if tiers else 0.0,
                savings=savings))
        per_step.append(step_figures)
        whole = sum(step_figures, Figures())
        if not tiers:
            cells.append(_Cell(series.key, NO_ROUTER_TIER, whole))
            continue
        machine = replace(whole, requests=0.0, used_tokens=0.0, budget_tokens=0.0,
                          fixed_budget_tokens=0.0, savings=0.0)
        if used_total <= 0:
            cells.append(_Cell(series.key, NO_TOKENS_TIER, machine))
        for t in tiers:
            share = used_by_tier[t.tier] / used_total if used_total > 0 else 0.0
            requests = sum(t.requests) * weight
            used = used_by_tier[t.tier] * weight
            fixed = requests * top_mean if top_mean is not None else used
            savings = (fixed - used) * cost_per_token if cost_per_token is not None else 0.0
            cells.append(_Cell(series.key, t.tier, replace(
                machine.scaled(share), requests=requests, used_tokens=used,
                budget_tokens=sum(t.budget_tokens) * weight, fixed_budget_tokens=fixed,
                savings=savings)))
    summary = ServiceTiers(
        service_id, top_tier, top_mean,
        service_cost / used_total if used_total > 0 else None)
    return cells, per_step, summary, warnings


def _group(cells: Iterable[_Cell], dims: Sequence[str]) -> tuple[Row, ...]:
    groups: dict[tuple[str, ...], Figures] = defaultdict(Figures)
    for cell in cells:
        key = tuple(cell.dim(d) for d in dims)
        groups[key] = groups[key] + cell.figures
    return tuple(sorted((Row(k, f) for k, f in groups.items()),
                        key=lambda r: (-r.figures.cost, r.group)))


def compute_report(inputs: ReportInputs, group_by: Sequence[str]) -> Report:
    """Every figure of the report for ``inputs``, grouped by ``group_by``."""
    check_inputs(inputs)
    period = inputs.period
    steps = period.steps
    for series in inputs.usage:
        lengths = {len(series.gpu_seconds), len(series.idle_gpu_seconds),
                   len(series.cost) if series.cost is not None else steps}
        if lengths != {steps}:
            raise ValueError(f"{series.key.service_id}: series length {lengths} != {steps}")
    cells: list[_Cell] = []
    charges: list[Charge] = []
    summaries: list[ServiceTiers] = []
    warnings: list[str] = []
    by_service_cost: dict[str, list[float]] = {}
    actual = _zeros(steps)
    fixed_budget = _zeros(steps)
    for _, service in sorted(_services(inputs).items()):
        service_cells, per_step, summary, notes = _service_cells(service, steps)
        cells.extend(service_cells)
        summaries.append(summary)
        warnings.extend(notes)
        line = by_service_cost.setdefault(summary.service_id, _zeros(steps))
        for series, step_figures in zip(service.usage, per_step, strict=True):
            for i, figures in enumerate(step_figures):
                line[i] += figures.cost
                actual[i] += figures.metered_cost
                fixed_budget[i] += figures.fixed_budget_cost
                if figures.gpu_hours > 0 or figures.cost > 0 or figures.requests > 0:
                    charges.append(Charge(series.key, period.step_start(i),
                                          period.step_end(i), figures))
    total = sum((c.figures for c in cells), Figures())
    cost_over_time = tuple(sorted(
        ((sid, tuple(values)) for sid, values in by_service_cost.items()),
        key=lambda item: (-sum(item[1]), item[0])))
    return Report(
        period=period, group_by=tuple(group_by), rows=_group(cells, group_by), total=total,
        by_tier=_group(cells, ("tier",)), cost_over_time=cost_over_time,
        actual_over_time=tuple(actual), fixed_budget_over_time=tuple(fixed_budget),
        charges=tuple(charges), services=tuple(summaries), warnings=tuple(warnings),
        priced_from=inputs.priced_from)
