"""FOCUS 1.2 export of a cost report: one CSV row per service label set and step.

Role: ``ponder cost report --format focus`` (``cli``) writes ``focus_rows(report)``.
The dataset carries every column FOCUS 1.2 marks Mandatory, the Conditional and
Recommended ones Ponder can fill (consumed quantity, unit prices, resource, sub account,
tags, charge frequency, service subcategory), then Ponder's own columns prefixed ``x_``.
FOCUS columns come first, in alphabetical order; a null is an empty field.

How Ponder's figures map (one row = one charge, ``ChargeCategory`` Usage):

- the charge period is the report step; the billing period is the calendar month (UTC)
  the charge starts in;
- ``BilledCost`` = ``EffectiveCost`` = ``ListCost`` = ``ContractedCost`` = the cost of
  the step; ``PricingQuantity`` = ``ConsumedQuantity`` = its GPU-hours, unit
  ``GPU-Hours``; the unit prices are cost / GPU-hours (the service's average price when
  the step held no GPU);
- the resource is the ReasoningService (``ResourceId``
  ``reasoningservices.ponder.dev/<namespace>/<name>``), the sub account its namespace,
  ``Tags`` its OpenCost labels (team, department, env, owner, app);
- ``x_IdleCost``, ``x_Requests``, ``x_GeneratedTokens``, ``x_FixedBudgetCost`` and
  ``x_Savings`` are the report's figures for the same row (see ``model``).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

from .model import Charge, Report, SeriesKey

FOCUS_VERSION = "1.2"
MANDATORY_COLUMNS: tuple[str, ...] = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "ChargeFrequency", "ConsumedQuantity", "ConsumedUnit", "ContractedUnitPrice",
    "ListUnitPrice", "ResourceId", "ResourceName", "ResourceType", "ServiceSubcategory",
    "SubAccountId", "SubAccountName", "Tags",
)
FOCUS_COLUMNS: tuple[str, ...] = tuple(sorted((*MANDATORY_COLUMNS, *OPTIONAL_COLUMNS)))
CUSTOM_COLUMNS: tuple[str, ...] = (
    "x_Namespace", "x_ReasoningService", "x_GpuType", "x_Team", "x_Department", "x_Env",
    "x_Owner", "x_App", "x_GpuHours", "x_IdleGpuHours", "x_IdleCost", "x_Requests",
    "x_GeneratedTokens", "x_BudgetTokens", "x_FixedBudgetCost", "x_Savings",
    "x_PricedFrom",
)
COLUMNS: tuple[str, ...] = (*FOCUS_COLUMNS, *CUSTOM_COLUMNS)
UNIT = "GPU-Hours"


def number(value: float) -> str:
    """FOCUS Numeric Format: plain decimal, no exponent, no sign on positives."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return "0" if text in {"", "-0"} else text


def timestamp(moment: datetime) -> str:
    """FOCUS Date/Time Format: ``YYYY-MM-DDTHH:mm:ssZ`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def billing_month(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) holding ``moment``: inclusive start, exclusive end."""
    utc = moment.astimezone(UTC)
    start = datetime(utc.year, utc.month, 1, tzinfo=UTC)
    end = datetime(utc.year + utc.month // 12, utc.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _average_prices(report: Report) -> dict[SeriesKey, float]:
    cost: dict[SeriesKey, float] = defaultdict(float)
    hours: dict[SeriesKey, float] = defaultdict(float)
    for charge in report.charges:
        cost[charge.key] += charge.figures.cost
        hours[charge.key] += charge.figures.gpu_hours
    return {key: cost[key] / hours[key] for key in cost if hours[key] > 0}


def _row(charge: Charge, average_price: float, *, billing_account: str,
         provider: str, priced_from: str) -> dict[str, str]:
    key, f = charge.key, charge.figures
    unit_price = f.cost / f.gpu_hours if f.gpu_hours > 0 else average_price
    period_start, period_end = billing_month(charge.start)
    tags = key.tags()
    return {
        "BilledCost": number(f.cost),
        "BillingAccountId": billing_account,
        "BillingAccountName": billing_account,
        "BillingCurrency": "USD",
        "BillingPeriodEnd": timestamp(period_end),
        "BillingPeriodStart": timestamp(period_start),
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": f"GPU time of ReasoningService {key.service_id}"
                             f" ({key.gpu_type or 'unknown'} GPUs)",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": timestamp(charge.end),
        "ChargePeriodStart": timestamp(charge.start),
        "ConsumedQuantity": number(f.gpu_hours),
        "ConsumedUnit": UNIT,
        "ContractedCost": number(f.cost),
        "ContractedUnitPrice": number(unit_price),
        "EffectiveCost": number(f.cost),
        "InvoiceIssuerName": provider,
        "ListCost": number(f.cost),
        "ListUnitPrice": number(unit_price),
        "PricingQuantity": number(f.gpu_hours),
        "PricingUnit": UNIT,
        "ProviderName": provider,
        "PublisherName": "Ponder",
        "ResourceId": f"reasoningservices.ponder.dev/{key.namespace}/{key.service}",
        "ResourceName": key.service,
        "ResourceType": "ReasoningService",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": "Ponder",
        "ServiceSubcategory": "Generative AI",
        "SubAccountId": key.namespace,
        "SubAccountName": key.namespace,
        "Tags": json.dumps(tags, sort_keys=True) if tags else "",
        "x_Namespace": key.namespace,
        "x_ReasoningService": key.service,
        "x_GpuType": key.gpu_type,
        "x_Team": key.team,
        "x_Department": key.department,
        "x_Env": key.env,
        "x_Owner": key.owner,
        "x_App": key.app,
        "x_GpuHours": number(f.gpu_hours),
        "x_IdleGpuHours": number(f.idle_gpu_hours),
        "x_IdleCost": number(f.idle_cost),
        "x_Requests": number(f.requests),
        "x_GeneratedTokens": number(f.used_tokens),
        "x_BudgetTokens": number(f.budget_tokens),
        "x_FixedBudgetCost": number(f.fixed_budget_cost),
        "x_Savings": number(f.savings),
        "x_PricedFrom": priced_from,
    }


def focus_rows(
    report: Report, *, billing_account: str = "ponder", provider: str = "Kubernetes",
) -> Iterator[dict[str, str]]:
    """The report's charges as FOCUS 1.2 rows (column name → CSV field)."""
    prices = _average_prices(report)
    for charge in report.charges:
        yield _row(charge, prices.get(charge.key, 0.0), billing_account=billing_account,
                   provider=provider, priced_from=report.priced_from)


def write_focus_csv(
    report: Report, stream: TextIO, *, billing_account: str = "ponder",
    provider: str = "Kubernetes",
) -> int:
    """Write the FOCUS CSV to ``stream``; returns the number of rows."""
    writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in focus_rows(report, billing_account=billing_account, provider=provider):
        writer.writerow(row)
        count += 1
    return count
