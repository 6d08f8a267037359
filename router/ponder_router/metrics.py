"""The router's Prometheus metrics, in a registry of their own (served at ``/metrics``).

Role: the router half of the router → autoscaler contract. The names below are that
contract: the operator's queries (``ponder_operator/adapters/prometheus.py``), the cost
report and the chart's dashboard and alerts use them as written here, and
``tests/integration/test_chart_monitoring.py`` checks that every ``ponder_router_*`` series the
chart queries is one this module exports. Gauges are computed at scrape time from the
executor's live state, so they can never drift:

- ``ponder_router_queue_depth{service}``: requests admitted but not started (waiting
  for a slot, or held because no Triton replica exists yet);
- ``ponder_router_inflight_samples{service}``: samples running on Triton;
- ``ponder_router_demand_tokens{service}``: expected tokens still to generate for queued
  and running requests, each weighted by its budget (``demand.expected_remaining_tokens``).

Per request: histograms of tokens and samples by ``tier``, end-to-end duration and time
to first token (the first output the router receives from Triton: a token of a streamed
sample, or the first whole sample of a request whose samples are fetched whole);
counters of requests by ``tier`` and ``outcome``, early stops,
rejections by ``reason``, upstream failures, truncated samples (the model server said
``finish_reason: length``: cut off at ``max_tokens``, so not a vote), forced answers (such a
sample continued with the answer cue, whose answer is a vote), probes sent, samples stopped
because their probes agreed (``ponder_router_probe_exits_total``), the tokens probes
generated and the tokens stopped samples left of their cap (an upper bound on the saving),
samples cancelled for low running confidence (``confidence``), and tokens
budgeted vs used by ``tier``
(``ponder_router_budget_tokens_total`` is the budget assigned, max tokens x max samples;
``ponder_router_used_tokens_total`` what was generated; the cost report derives the
savings from the two).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "RouterMetrics"]

_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
_SAMPLE_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 64)
_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RouterMetrics:
    """Every metric of one router process, for one ReasoningService."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queue_depth = Gauge("ponder_router_queue_depth",
                                 "Requests admitted, not yet started.", ["service"], registry=r)
        self.inflight_samples = Gauge("ponder_router_inflight_samples",
                                      "Samples running on Triton.", ["service"], registry=r)
        self.demand_tokens = Gauge(
            "ponder_router_demand_tokens",
            "Expected tokens still to generate for queued and in-flight requests.",
            ["service"], registry=r,
        )  # fmt: skip
        self.prior_requests_learned = Gauge(
            "ponder_router_prior_requests_learned",
            "Requests the prompt prior has learned from (saved state included); it takes "
            "over from the fixed estimator at spec.budgets.prior.warmRequests.",
            ["service"], registry=r,
        )  # fmt: skip
        self.request_tokens = Histogram(
            "ponder_router_request_tokens", "Generated tokens per request, all samples.",
            ["tier"], buckets=_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_samples = Histogram(
            "ponder_router_request_samples", "Samples launched per request.",
            ["tier"], buckets=_SAMPLE_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "ponder_router_request_duration_seconds", "End-to-end request latency.",
            buckets=_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.time_to_first_token = Histogram(
            "ponder_router_time_to_first_token_seconds",
            "From request arrival to the first generated token of any sample.",
            buckets=_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.early_stops = Counter("ponder_router_early_stops_total",
                                   "Requests that stopped before their sample budget.",
                                   registry=r)  # fmt: skip
        self.rejections = Counter("ponder_router_rejections_total",
                                  "Requests refused before running, by reason.", ["reason"],
                                  registry=r)  # fmt: skip
        self.upstream_failures = Counter("ponder_router_upstream_failures_total",
                                         "Samples that failed on Triton.", registry=r)
        self.truncated_samples = Counter(
            "ponder_router_truncated_samples_total",
            "Samples cut off at their max_tokens (finish_reason length); none is a vote.",
            registry=r,
        )  # fmt: skip
        self.forced_answers = Counter(
            "ponder_router_forced_answers_total",
            "Samples cut off at their max_tokens that answered at the answer cue "
            "(budget forcing); each is a vote.",
            registry=r,
        )  # fmt: skip
        self.probes = Counter("ponder_router_probes_total",
                              "Probes forked from streaming samples (probe exits).", registry=r)
        self.probe_exits = Counter(
            "ponder_router_probe_exits_total",
            "Samples stopped because their probes agreed; each votes with the probed answer.",
            registry=r,
        )  # fmt: skip
        self.probe_tokens = Counter("ponder_router_probe_tokens_total",
                                    "Tokens generated by probes.", registry=r)
        self.probe_unspent_tokens = Counter(
            "ponder_router_probe_unspent_tokens_total",
            "Tokens of their max_tokens that samples stopped by probe exits left unspent "
            "(an upper bound on the tokens probe exits saved).",
            registry=r,
        )  # fmt: skip
        self.low_confidence_cancels = Counter(
            "ponder_router_low_confidence_cancels_total",
            "Samples cancelled while running because their confidence fell below the "
            "service's learned threshold; none is a vote.",
            registry=r,
        )  # fmt: skip
        self.requests = Counter("ponder_router_requests_total", "Requests by tier and outcome.",
                                ["tier", "outcome"], registry=r)  # fmt: skip
        self.budget_tokens = Counter(
            "ponder_router_budget_tokens_total",
            "Token budget assigned (max tokens per sample x max samples), by tier.",
            ["tier"], registry=r,
        )  # fmt: skip
        self.used_tokens = Counter("ponder_router_used_tokens_total",
                                   "Tokens actually generated, by tier.", ["tier"], registry=r)
        self._tier_children: dict[str, tuple[Histogram, Histogram, Counter, Counter]] = {}

    def bind_live_state(
        self,
        queue_depth: Callable[[], float],
        inflight_samples: Callable[[], float],
        demand_tokens: Callable[[], float],
    ) -> None:
        """Gauges read the executor's live state at scrape time."""
        self.queue_depth.labels(self.service).set_function(queue_depth)
        self.inflight_samples.labels(self.service).set_function(inflight_samples)
        self.demand_tokens.labels(self.service).set_function(demand_tokens)

    def bind_prior(self, requests_learned: Callable[[], float]) -> None:
        """The prior's gauge reads the router's prior at scrape time."""
        self.prior_requests_learned.labels(self.service).set_function(requests_learned)

    def observe_request(
        self, *, tier: str, outcome: str, tokens: int, samples: int, budget_tokens: int
    ) -> None:
        self.requests.labels(tier, outcome).inc()
        children = self._tier_children.get(tier)
        if children is None:  # a label lookup per metric per request adds up: cache them
            children = self._tier_children[tier] = (
                self.request_tokens.labels(tier), self.request_samples.labels(tier),
                self.budget_tokens.labels(tier), self.used_tokens.labels(tier),
            )  # fmt: skip
        request_tokens, request_samples, budget, used = children
        request_tokens.observe(tokens)
        request_samples.observe(samples)
        budget.inc(budget_tokens)
        used.inc(tokens)

    def reject(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
