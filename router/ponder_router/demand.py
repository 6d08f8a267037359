"""The tokens a request is still expected to generate: its share of the published demand.

Role: what ``RequestRun.demand_tokens`` (``executor``) adds to the
``ponder_router_demand_tokens`` gauge the autoscaler reads. A sample's cap is what it may
spend, not what it will: under the thinking-budget rules a sample ends at its own length
or at its tier's cap, and, with budget forcing (``forcing``), one that reaches the cap
spends the answer allowance on top. Neighbours: ``budgets.expected_request_tokens`` (the
samples not started yet, from the ``DemandModel``). Pure: no I/O, no clock.

Model: a sample's length ``L`` is exponential with mean ``m`` (memoryless), so a running
sample that has written ``t`` tokens of its cap ``c`` still writes, on average,
``m (1 - exp(-(c - t) / m))`` tokens, plus the answer allowance ``a`` with the chance
``exp(-(c - t) / m)`` that it reaches the cap. ``m`` is the one whose capped mean
``m (1 - exp(-c / m))`` is the ``DemandModel``'s ``token_fill_ratio`` of the cap (which
``ponder calibrate`` measures). An assumption, checked against real lengths: the whole-day
DeepSeek-R1 output lengths (ServeGen; mean 1,527 tokens) have p50 792 and p90 3,432 where
an exponential of that mean has 1,058 and 3,516; the real tail is heavier (p99 12,607
against 7,032), so long-running samples are if anything under-counted.
"""

from __future__ import annotations

import math
from functools import lru_cache

from scipy.optimize import brentq

from .budgets import Budget, DemandModel, expected_request_tokens


def untruncated_mean_tokens(fill_ratio: float, cap_tokens: int) -> float:
    """The mean ``m`` of the exponential length whose mean capped at ``cap_tokens`` is
    ``fill_ratio`` of it (``inf`` for a ratio of 1: every sample reaches its cap)."""
    if not 0.0 < fill_ratio <= 1.0 or cap_tokens < 1:
        raise ValueError("fill_ratio must be in (0, 1] and cap_tokens at least 1")
    return _mean_over_cap(fill_ratio) * cap_tokens


@lru_cache(maxsize=4096)
def _mean_over_cap(fill_ratio: float) -> float:
    """``m / cap`` for ``fill_ratio``: the root of ``x (1 - exp(-1 / x)) = fill_ratio``
    (the capped mean over the cap, rising with ``x``), by Brent's method. It depends on the
    ratio alone, so one solve serves every cap: the gauge asks for every live request on
    every scrape and on every new request's load, and a learned fill changes after every
    finished request."""
    if fill_ratio >= 1.0:
        return math.inf

    def excess(x: float) -> float:
        return x * -math.expm1(-1.0 / x) - fill_ratio

    high = 1.0
    while excess(high) < 0.0:
        high *= 2.0
    return float(brentq(excess, 1e-9, high, xtol=1e-15, rtol=1e-12))


def expected_remaining_sample_tokens(
    written_tokens: float, cap_tokens: int, mean_tokens: float, answer_tokens: int = 0
) -> float:
    """Tokens a running sample that has written ``written_tokens`` still writes (see the
    module docstring); ``answer_tokens``: the forcing allowance (0: forcing off)."""
    left = max(cap_tokens - written_tokens, 0.0)
    if math.isinf(mean_tokens):
        return left + answer_tokens
    reaches_cap = math.exp(-left / mean_tokens)
    return mean_tokens * (1.0 - reaches_cap) + answer_tokens * reaches_cap


def expected_remaining_tokens(budget: Budget, model: DemandModel, *, samples_finished: int,
                              running_samples: int, running_tokens: float,
                              answer_tokens: int = 0,
                              extra_sample_ratio: float | None = None) -> float:  # fmt: skip
    """Tokens a request still generates: its samples not started yet
    (``expected_request_tokens``, with ``extra_sample_ratio`` where the learned prior gives
    one, each reaching the cap, and spending ``answer_tokens`` more, with the model's
    chance) and its ``running_samples``, which have written ``running_tokens`` between them
    (taken as an equal share each, under the cap of the last one launched). A sample not
    started yet counts the first wave's expected length (the prior's) whatever its cap
    (``Budget.sample_max_tokens``): a later sample's larger cap lets a long one finish."""
    mean = untruncated_mean_tokens(model.token_fill_ratio, budget.max_tokens_per_sample)
    started = samples_finished + running_samples
    cap = budget.sample_max_tokens(max(started - 1, 0))
    waiting = expected_request_tokens(budget, model, samples_finished=started,
                                      extra_sample_ratio=extra_sample_ratio)  # fmt: skip
    waiting_samples = waiting / (model.token_fill_ratio * budget.max_tokens_per_sample)
    next_cap = budget.sample_max_tokens(started)
    reaches_cap = 1.0 if math.isinf(mean) else math.exp(-next_cap / mean)
    total = waiting + waiting_samples * answer_tokens * reaches_cap
    if running_samples > 0:
        each = running_tokens / running_samples
        total += running_samples * expected_remaining_sample_tokens(each, cap, mean,
                                                                    answer_tokens)  # fmt: skip
    return total
