"""GPU time → money: the price of a GPU-hour and the running totals. Pure functions.

A service's price per GPU-hour is ``spec.cost.gpuHourlyPrice`` when set, else the
pricing table's entry for ``spec.cost.pricing`` (cloud, GPU type, on-demand or spot).
The table is read from a CSV shaped like ``gpu_price_summary.csv`` (columns ``cloud``,
``accelerator``, ``accelerator_count``, ``ondemand_per_gpu_median``, ``spot_median``):
per GPU, the median on-demand price over the offerings that carry that GPU, and the
median spot price of an offering divided by its GPU count.

GPU-seconds accumulate from *ready* replicas times GPUs per replica between two loop ticks.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder_operator.api.spec import ReasoningServiceSpec
from ponder_operator.api.status import ReasoningServiceStatus

SECONDS_PER_HOUR = 3600.0


class PricingError(LookupError):
    """A service's GPU type has no price in the table."""


@dataclass(frozen=True)
class PriceTable:
    """USD per GPU-hour by (cloud, gpu type, offering)."""

    prices: dict[tuple[str, str, str], float]

    @classmethod
    def from_csv(cls, path: Path) -> PriceTable:
        per_gpu: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                cloud, gpu = row["cloud"].lower(), row["accelerator"].upper()
                count = float(row["accelerator_count"] or 0)
                if row.get("ondemand_per_gpu_median"):
                    per_gpu[(cloud, gpu, "on-demand")].append(
                        float(row["ondemand_per_gpu_median"]))
                if row.get("spot_median") and count > 0:
                    per_gpu[(cloud, gpu, "spot")].append(float(row["spot_median"]) / count)
        return cls({k: statistics.median(v) for k, v in per_gpu.items() if v})

    def lookup(self, cloud: str, gpu_type: str, offering: str) -> float:
        key = (cloud.lower(), gpu_type.upper(), offering)
        if key not in self.prices:
            known = sorted({g for c, g, o in self.prices if c == key[0] and o == offering})
            raise PricingError(
                f"no {offering} price for GPU type {gpu_type!r} on {cloud}; "
                f"the table has: {', '.join(known) or 'nothing for that cloud'}")
        return self.prices[key]


def gpu_hourly_price(spec: ReasoningServiceSpec, table: PriceTable | None) -> float | None:
    """USD per GPU-hour for the service, or None when neither the spec nor a table says."""
    if spec.cost.gpu_hourly_price is not None:
        return spec.cost.gpu_hourly_price
    pricing = spec.cost.pricing
    if pricing is None or table is None:
        return None
    return table.lookup(pricing.cloud, pricing.gpu_type, pricing.offering)


@dataclass(frozen=True)
class CostTotals:
    gpu_seconds_total: float
    hourly_cost: float | None
    cost: float | None

    def as_status_updates(self) -> dict[str, Any]:
        updates: dict[str, Any] = {
            "gpu_seconds_total": round(self.gpu_seconds_total, 3),
            "gpu_hours": round(self.gpu_seconds_total / SECONDS_PER_HOUR, 6),
        }
        if self.hourly_cost is not None and self.cost is not None:
            updates.update(hourly_cost=round(self.hourly_cost, 4), cost=round(self.cost, 6))
        return updates


def accumulate(
    status: ReasoningServiceStatus, spec: ReasoningServiceSpec, *, ready_replicas: int,
    elapsed_seconds: float, price: float | None,
) -> CostTotals:
    """Totals after ``elapsed_seconds`` more at ``ready_replicas`` (resuming from status)."""
    gpus = ready_replicas * spec.resources.gpus_per_replica
    total = (status.gpu_seconds_total or 0.0) + gpus * max(elapsed_seconds, 0.0)
    if price is None:
        return CostTotals(total, None, None)
    return CostTotals(total, gpus * price, total / SECONDS_PER_HOUR * price)
