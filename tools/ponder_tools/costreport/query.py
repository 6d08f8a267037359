"""Read a cost report's series from Prometheus (range queries via prometheus-api-client).

Role: the only I/O of ``ponder cost report``; ``model`` computes from what this returns.
Every query is a range query at the report's step, evaluated at the end of each step, so
that each value covers ``(end - step, end]``:

- ``increase`` of the operator's ``ponder_gpu_seconds_total``, ``ponder_cost_total`` and
  ``ponder_idle_gpu_seconds_total``, summed by its labels (namespace, service, gpu_type,
  team, department, env, owner, app);
- for services without the idle counter only (an operator that does not export it):
  idle GPU-seconds sampled from ``ponder_ready_gpus`` where the routers' summed
  ``ponder_router_demand_tokens`` is 0, every resolution step (a subquery, summed over the
  step; far costlier than the counter). The subquery's range stops one millisecond short
  of the step, so consecutive steps share no sample whether the server's ranges are
  closed at the start (Prometheus 2) or open (Prometheus 3);
- ``increase`` of the router's ``ponder_router_requests_total`` (every outcome but
  ``rejected``: the requests that ran), ``ponder_router_used_tokens_total`` and
  ``ponder_router_budget_tokens_total`` by tier.

The router's counters name their service in ``service`` or, as the chart's PodMonitor
labels them, ``reasoningservice``; a router series without ``namespace`` (a static scrape)
stands for the service of that name in any namespace.

Long periods are cut into chunks (at most ``MAX_POINTS_PER_SERIES`` steps per query, and
the sampled idle subquery at most ``IDLE_SAMPLES_PER_QUERY`` inner samples) that run on a
few threads; ``progress(done, total)`` is called as chunks finish.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from .model import (
    Period,
    PrometheusQueryError,
    ReportInputs,
    SeriesKey,
    TierSeries,
    UsageSeries,
)

OPERATOR_LABELS = "namespace, service, gpu_type, team, department, env, owner, app"
MAX_POINTS_PER_SERIES = 10_000  # Prometheus refuses more than 11,000 per series
IDLE_SAMPLES_PER_QUERY = 10_000_000  # inner subquery samples (query.max-samples is 50M)
MAX_SERVICES_IN_MATCHER = 200

Progress = Callable[[int, int], None]


def counter_query(metric: str, step_seconds: int) -> str:
    return f"sum by ({OPERATOR_LABELS}) (increase({metric}[{step_seconds}s]))"


def sampled_idle_query(step_seconds: int, resolution_seconds: int, *,
                       services: Sequence[str] = (), any_namespace: bool = False) -> str:
    """Idle GPU-seconds per step, sampled: ready GPUs while the summed demand is 0.

    For services whose operator does not export ``ponder_idle_gpu_seconds_total``.
    ``ponder_ready_gpus`` is evaluated every ``resolution_seconds`` (a subquery) where the
    service's routers' ``ponder_router_demand_tokens`` (the gauge names its service in
    ``service``) sum to 0; ``services`` narrows it to those names. ``any_namespace`` adds
    the match for routers scraped without a ``namespace`` label (an ``or``: only when
    such series exist, since it doubles the work).
    """
    only = ""
    if services:
        names = "|".join(re.escape(name).replace("\\", "\\\\")  # a PromQL string
                         for name in sorted(set(services)))
        only = f'service=~"{names}"'
    gpus = "ponder_ready_gpus" + (f"{{{only}}}" if only else "")
    demand = "ponder_router_demand_tokens{" + ",".join(
        x for x in ('namespace!=""', only) if x) + "}"
    inner = (f"{gpus} and on (namespace, service) "
             f"(sum by (namespace, service) ({demand}) == 0)")
    if any_namespace:
        unlabelled = "ponder_router_demand_tokens{" + ",".join(
            x for x in ('namespace=""', only) if x) + "}"
        inner += f" or {gpus} and on (service) (sum by (service) ({unlabelled}) == 0)"
    window_ms = step_seconds * 1000 - 1
    return (f"sum by ({OPERATOR_LABELS}) "
            f"(sum_over_time(({inner})[{window_ms}ms:{resolution_seconds}s])) "
            f"* {resolution_seconds}")


def unlabelled_demand_query(period_seconds: int) -> str:
    """Whether any router demand series without ``namespace`` exists in the period."""
    return ("count(count_over_time(ponder_router_demand_tokens{namespace=\"\"}"
            f"[{period_seconds}s]))")


def router_query(metric: str, step_seconds: int) -> str:
    return (f"sum by (namespace, service, reasoningservice, tier) "
            f"(increase({metric}[{step_seconds}s]))")


OPERATOR_COUNTERS = {
    "gpu": "ponder_gpu_seconds_total",
    "cost": "ponder_cost_total",
    "idle": "ponder_idle_gpu_seconds_total",
}
ROUTER_METRICS = {
    "requests": 'ponder_router_requests_total{outcome!="rejected"}',
    "used_tokens": "ponder_router_used_tokens_total",
    "budget_tokens": "ponder_router_budget_tokens_total",
}


@dataclass(frozen=True)
class _Task:
    name: str
    query: str
    first_step: int  # index of the chunk's first step
    steps: int


def _chunks(name: str, query: str, total_steps: int, steps_per_chunk: int) -> list[_Task]:
    size = max(1, steps_per_chunk)
    return [_Task(name, query, first, min(size, total_steps - first))
            for first in range(0, total_steps, size)]


def connect(url: str, timeout_seconds: float) -> PrometheusConnect:
    """A client that fails fast on a dead server (one retry) but waits for slow queries."""
    return PrometheusConnect(url=url, disable_ssl=True, timeout=math.ceil(timeout_seconds),
                             retry=Retry(total=1, backoff_factor=0.2,
                                         status_forcelist=(502, 503, 504)))


_ERROR_FIELD = re.compile(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _describe(exc: BaseException, url: str) -> str:
    """One line for a failed request: unreachable, timed out, or the server's own error."""
    if isinstance(exc, PrometheusApiClientException):
        found = _ERROR_FIELD.search(str(exc))
        reason = found.group(1).replace('\\"', '"') if found else str(exc)
        return f"Prometheus at {url} refused a query: {reason}"
    if isinstance(exc, requests.Timeout):
        return f"Prometheus at {url} did not answer in time ({type(exc).__name__})"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot reach Prometheus at {url} (connection failed)"
    return f"Prometheus at {url}: {exc}"


class _Reader:
    """Runs the range queries of one report on a few threads, one client per thread."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self._local = threading.local()

    def client(self) -> PrometheusConnect:
        client: PrometheusConnect | None = getattr(self._local, "client", None)
        if client is None:
            client = connect(self.url, self.timeout_seconds)
            self._local.client = client
        return client

    def check(self) -> None:
        """Fail fast, with one line, when nothing answers like Prometheus at the URL."""
        try:
            self.client().custom_query("vector(1)")
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise PrometheusQueryError(_describe(exc, self.url)) from exc

    def instant(self, query: str, at: datetime) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = self.client().custom_query(
                query, params={"time": f"{at.timestamp():.3f}"})
        except (PrometheusApiClientException, requests.RequestException) as exc:
            raise PrometheusQueryError(_describe(exc, self.url)) from exc
        return result

    def range(self, task: _Task, period: Period) -> list[dict[str, Any]]:
        step = period.step_seconds
        start = period.start + timedelta(seconds=(task.first_step + 1) * step)
        end = period.start + timedelta(seconds=(task.first_step + task.steps) * step)
        try:
            result: list[dict[str, Any]] = self.client().custom_query_range(
                task.query, start_time=start, end_time=end, step=f"{step}s")
        except (PrometheusApiClientException, requests.RequestException) as exc:
            raise PrometheusQueryError(_describe(exc, self.url)) from exc
        return result


def _add_values(line: list[float], series: Mapping[str, Any], period: Period) -> None:
    """Add a range result's values into ``line`` at their step indexes (NaN: no value yet)."""
    first_end = period.start.timestamp() + period.step_seconds
    for stamp, text in series["values"]:
        index = round((float(stamp) - first_end) / period.step_seconds)
        value = float(text)
        if 0 <= index < len(line) and math.isfinite(value):
            line[index] = value if math.isnan(line[index]) else line[index] + value


def fetch_inputs(
    url: str, period: Period, *, timeout_seconds: float = 120.0, parallel: int = 4,
    progress: Progress | None = None,
) -> ReportInputs:
    """Every series the report needs for ``period``, from the Prometheus at ``url``."""
    reader = _Reader(url, timeout_seconds)
    reader.check()
    steps = period.steps
    per_chunk = MAX_POINTS_PER_SERIES
    tasks = [
        *(t for name, metric in OPERATOR_COUNTERS.items()
          for t in _chunks(name, counter_query(metric, period.step_seconds), steps, per_chunk)),
        *(t for name, metric in ROUTER_METRICS.items()
          for t in _chunks(name, router_query(metric, period.step_seconds), steps,
                           per_chunk)),
    ]
    done = 0
    total = len(tasks)
    lock = threading.Lock()

    def run(task: _Task) -> tuple[_Task, list[dict[str, Any]]]:
        nonlocal done
        result = reader.range(task, period)
        with lock:
            done += 1
            if progress is not None:
                progress(done, total)
        return task, result

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        first = list(pool.map(run, tasks))
        counted = {SeriesKey.from_labels(s["metric"])
                   for task, result in first if task.name == "idle" for s in result}
        unmetered = {SeriesKey.from_labels(s["metric"])
                     for task, result in first if task.name == "gpu" for s in result} - counted
        second: list[tuple[_Task, list[dict[str, Any]]]] = []
        if unmetered:
            names = sorted({key.service for key in unmetered})
            unlabelled = bool(reader.instant(unlabelled_demand_query(period.seconds),
                                             period.end))
            samples_per_step = period.step_seconds // period.resolution_seconds
            idle_steps = IDLE_SAMPLES_PER_QUERY // (len(unmetered) * samples_per_step)
            query = sampled_idle_query(
                period.step_seconds, period.resolution_seconds, any_namespace=unlabelled,
                services=names if len(names) <= MAX_SERVICES_IN_MATCHER else ())
            sampled = _chunks("sampled_idle", query, steps,
                              min(per_chunk, max(1, idle_steps)))
            with lock:
                total += len(sampled)
            second = [(task, [s for s in result if SeriesKey.from_labels(s["metric"])
                              in unmetered]) for task, result in pool.map(run, sampled)]
    return _assemble(period, [*first, *second])


def _assemble(period: Period,
              results: Sequence[tuple[_Task, list[dict[str, Any]]]]) -> ReportInputs:
    steps = period.steps
    operator: dict[str, dict[SeriesKey, list[float]]] = {
        name: {} for name in (*OPERATOR_COUNTERS, "sampled_idle")}
    router: dict[str, dict[tuple[str, str, str], list[float]]] = {
        name: {} for name in ROUTER_METRICS}
    for task, result in results:
        for series in result:
            labels: Mapping[str, str] = series["metric"]
            if task.name in operator:
                # a step without a cost value stays NaN: unpriced, which is not free
                empty = math.nan if task.name == "cost" else 0.0
                line = operator[task.name].setdefault(SeriesKey.from_labels(labels),
                                                      [empty] * steps)
                _add_values(line, series, period)
            else:
                service = labels.get("reasoningservice") or labels.get("service", "")
                rkey = (labels.get("namespace", ""), service, labels.get("tier", ""))
                _add_values(router[task.name].setdefault(rkey, [0.0] * steps), series, period)
    idle = {**operator["sampled_idle"], **operator["idle"]}
    usage = tuple(
        UsageSeries(key=key, gpu_seconds=tuple(gpu),
                    cost=tuple(operator["cost"][key]) if key in operator["cost"] else None,
                    idle_gpu_seconds=tuple(idle.get(key, [0.0] * steps)),
                    idle_sampled=key not in operator["idle"])
        for key, gpu in sorted(operator["gpu"].items()))
    tier_keys = sorted({k for lines in router.values() for k in lines})
    zeros = [0.0] * steps
    tiers = tuple(
        TierSeries(namespace=ns, service=svc, tier=tier,
                   requests=tuple(router["requests"].get((ns, svc, tier), zeros)),
                   used_tokens=tuple(router["used_tokens"].get((ns, svc, tier), zeros)),
                   budget_tokens=tuple(router["budget_tokens"].get((ns, svc, tier), zeros)))
        for ns, svc, tier in tier_keys if svc)
    return ReportInputs(period=period, usage=usage, tiers=tiers)
