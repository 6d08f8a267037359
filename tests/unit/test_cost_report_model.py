"""The cost report's pure figures: periods, grouping, tiers, savings, pricing, FOCUS, HTML."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ponder_operator.policy.cost import PriceTable
from ponder_tools.costreport import focus
from ponder_tools.costreport.cli import format_csv, format_table, report_document
from ponder_tools.costreport.html import render_html
from ponder_tools.costreport.model import (
    NO_ROUTER_TIER,
    NO_TOKENS_TIER,
    EmptyPeriodError,
    MissingPriceError,
    Period,
    ReportInputError,
    ReportInputs,
    SeriesKey,
    TierSeries,
    UsageSeries,
    compute_report,
    parse_duration_seconds,
    parse_group_by,
    price_inputs,
    resolve_period,
)

T0 = datetime(2025, 1, 6, tzinfo=UTC)
NOW = datetime(2025, 1, 6, 12, 34, 56, tzinfo=UTC)
PERIOD = Period(T0, T0 + timedelta(hours=2), 3600, 60)  # two one-hour steps
ALPHA = SeriesKey("research", "alpha", "H100", team="math", env="prod")
BETA = SeriesKey("research", "beta", "L4", team="search")


def usage(key: SeriesKey, gpu_hours: tuple[float, float], price: float | None,
          idle_hours: tuple[float, float] = (0.0, 0.0)) -> UsageSeries:
    return UsageSeries(key, tuple(h * 3600 for h in gpu_hours),
                       None if price is None else tuple(h * price for h in gpu_hours),
                       tuple(h * 3600 for h in idle_hours))


def tier(name: str, requests: tuple[float, float], tokens_each: float, budget_each: float,
         service: str = "alpha", namespace: str = "research") -> TierSeries:
    return TierSeries(namespace, service, name, requests,
                      tuple(r * tokens_each for r in requests),
                      tuple(r * budget_each for r in requests))


def inputs() -> ReportInputs:
    """alpha: 2 GPUs at $3 for 2 h, idle 1 GPU-h; tiers easy (100 x 250) and hard
    (50 x 1,500); beta: 1 GPU at $1 for the first hour, no router."""
    return ReportInputs(PERIOD, (
        usage(ALPHA, (2, 2), 3.0, idle_hours=(1, 0)),
        usage(BETA, (1, 0), 1.0),
    ), (
        tier("easy", (60, 40), 250, 1024),
        tier("hard", (20, 30), 1500, 16384),
    ))


# -- period and arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600),
])
def test_durations_read_like_prometheus(text: str, seconds: int) -> None:
    assert parse_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7 days", "d7", "1.5h", "0s", "500ms"])
def test_a_bad_duration_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ReportInputError, match="use a whole number of seconds like"):
        parse_duration_seconds(text)


@pytest.mark.parametrize(("since", "step_seconds", "steps"), [
    ("1h", 60, 60), ("6h", 300, 72), ("1d", 900, 96), ("7d", 3600, 168), ("30d", 21600, 120),
    ("90d", 86400, 90),
])
def test_since_ends_now_on_the_minute_and_picks_at_most_200_steps(
    since: str, step_seconds: int, steps: int,
) -> None:
    period = resolve_period(now=NOW, since=since)
    assert period.end == datetime(2025, 1, 6, 12, 34, tzinfo=UTC)
    assert (period.step_seconds, period.steps) == (step_seconds, steps)


def test_start_and_end_are_rfc3339_and_the_step_must_divide_the_period() -> None:
    period = resolve_period(now=NOW, start="2025-01-01T00:00:00Z",
                            end="2025-01-01T02:00:00+00:00", step="30m")
    assert (period.start, period.steps) == (datetime(2025, 1, 1, tzinfo=UTC), 4)
    with pytest.raises(ReportInputError, match="must divide the period"):
        resolve_period(now=NOW, start="2025-01-01T00:00:00Z", end="2025-01-01T02:00:00Z",
                       step="7m")
    with pytest.raises(ReportInputError, match="RFC 3339"):
        resolve_period(now=NOW, start="yesterday")
    with pytest.raises(ReportInputError, match="UTC offset"):
        resolve_period(now=NOW, start="2025-01-01T00:00:00")
    with pytest.raises(ReportInputError, match="either --since or --start"):
        resolve_period(now=NOW, since="1d", start="2025-01-01T00:00:00Z")
    with pytest.raises(ReportInputError, match="whole number of resolution steps"):
        resolve_period(now=NOW, start="2025-01-01T00:00:30Z", end="2025-01-01T02:00:00Z")


def test_group_by_accepts_labels_and_aliases_and_names_the_choices() -> None:
    assert parse_group_by("namespace, label:team,gpu-type,tier,tier") == (
        "namespace", "team", "gpu_type", "tier")
    with pytest.raises(ReportInputError, match="unknown --group-by 'colour': choose from"):
        parse_group_by("service,colour")
    with pytest.raises(ReportInputError, match="empty"):
        parse_group_by(" , ")


# -- figures --------------------------------------------------------------------------------------


def test_service_figures_follow_the_definitions() -> None:
    report = compute_report(inputs(), ("namespace", "service"))
    rows = {row.group: row.figures for row in report.rows}
    alpha, beta = rows[("research", "alpha")], rows[("research", "beta")]
    assert [row.group for row in report.rows] == [("research", "alpha"), ("research", "beta")]
    assert (alpha.gpu_hours, alpha.cost) == (4, 12)
    assert (alpha.idle_gpu_hours, alpha.idle_cost) == (1, 3)
    assert alpha.requests == 150
    assert alpha.used_tokens == 100 * 250 + 50 * 1500  # 100,000
    assert alpha.cost_per_1m_tokens == pytest.approx(120)
    assert alpha.cost_per_1k_requests == pytest.approx(80)
    # top tier: hard (16,384 a request); 150 requests x 1,500 tokens at $12 / 100,000
    assert alpha.fixed_budget_tokens == pytest.approx(225_000)
    assert alpha.fixed_budget_cost == pytest.approx(27)
    assert alpha.savings == pytest.approx(15)
    assert (beta.cost, beta.metered_cost, beta.requests) == (1, 0, 0)
    assert beta.cost_per_1k_requests is None
    assert report.total.cost == 13
    assert report.warnings == ("research/beta: no router metrics (requests, tokens) in the "
                               "period",)
    assert report.services[0].top_tier == "hard"


def test_tiers_share_the_cost_by_generated_tokens() -> None:
    report = compute_report(inputs(), ("service", "tier"))
    rows = {row.group: row.figures for row in report.rows}
    assert rows[("alpha", "easy")].cost == pytest.approx(12 * 0.25)
    assert rows[("alpha", "hard")].cost == pytest.approx(12 * 0.75)
    assert rows[("alpha", "hard")].idle_cost == pytest.approx(3 * 0.75)
    assert rows[("alpha", "easy")].savings == pytest.approx((100 * 1500 - 25_000) * 12e-5)
    assert rows[("alpha", "hard")].savings == pytest.approx(0)
    assert rows[("beta", NO_ROUTER_TIER)].cost == 1
    assert sum(r.figures.cost for r in report.by_tier) == pytest.approx(13)


def test_requests_without_tokens_keep_the_cost_on_its_own_tier() -> None:
    data = ReportInputs(PERIOD, (usage(ALPHA, (1, 1), 2.0),),
                        (tier("easy", (5, 5), 0, 1024),))
    rows = {r.group: r.figures for r in compute_report(data, ("tier",)).rows}
    assert rows[(NO_TOKENS_TIER,)].cost == 4
    assert rows[("easy",)].requests == 10
    assert rows[("easy",)].savings == 0


def test_a_relabelled_service_splits_its_router_figures_by_gpu_time() -> None:
    before = usage(ALPHA, (2, 0), 3.0)
    after = usage(SeriesKey("research", "alpha", "H100", team="search"), (0, 1), 3.0)
    data = ReportInputs(PERIOD, (before, after), (tier("easy", (30, 0), 100, 1024),))
    rows = {r.group: r.figures for r in compute_report(data, ("team",)).rows}
    assert rows[("math",)].requests == pytest.approx(20)
    assert rows[("search",)].requests == pytest.approx(10)


def test_a_router_without_namespace_stands_for_its_service_in_any_namespace() -> None:
    unlabelled = tier("easy", (1, 1), 10, 20, namespace="")
    other = tier("easy", (7, 7), 10, 20, namespace="elsewhere")
    data = ReportInputs(PERIOD, (usage(ALPHA, (1, 1), 1.0),), (unlabelled, other))
    assert compute_report(data, ("service",)).total.requests == 2
    own = tier("easy", (3, 3), 10, 20)
    data = ReportInputs(PERIOD, (usage(ALPHA, (1, 1), 1.0),), (unlabelled, own))
    assert compute_report(data, ("service",)).total.requests == 6  # its own namespace wins


def test_idle_time_never_exceeds_the_gpu_time_of_its_step() -> None:
    data = ReportInputs(PERIOD, (usage(ALPHA, (1, 1), 2.0, idle_hours=(5, 0)),))
    assert compute_report(data, ("service",)).total.idle_gpu_hours == 1


def test_the_savings_over_time_add_up_to_the_total() -> None:
    report = compute_report(inputs(), ("service",))
    assert sum(report.fixed_budget_over_time) - sum(report.actual_over_time) == \
        pytest.approx(report.total.savings)
    assert dict(report.cost_over_time)["research/alpha"] == (6, 6)


def test_an_empty_period_and_an_unpriced_service_are_errors_not_zeros() -> None:
    with pytest.raises(EmptyPeriodError, match="no ponder_gpu_seconds_total series"):
        compute_report(ReportInputs(PERIOD, ()), ("service",))
    unpriced = ReportInputs(PERIOD, (usage(ALPHA, (1, 0), None),))
    with pytest.raises(MissingPriceError, match=r"research/alpha; pass --pricing"):
        compute_report(unpriced, ("service",))
    priced_later = replace(usage(ALPHA, (1, 1), 2.0), cost=(math.nan, 2.0))
    with pytest.raises(MissingPriceError, match="for all or part of the period"):
        compute_report(ReportInputs(PERIOD, (priced_later,)), ("service",))
    idle_before_the_price = replace(usage(ALPHA, (0, 1), 2.0), cost=(math.nan, 2.0))
    assert compute_report(ReportInputs(PERIOD, (idle_before_the_price,)),
                          ("service",)).total.cost == 2


def test_a_price_table_prices_gpu_hours_and_names_a_missing_gpu_type(tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("cloud,accelerator,accelerator_count,ondemand_per_gpu_median,spot_median\n"
                      "gcp,H100,8,10.0,40\ngcp,L4,1,1.0,0.5\n")
    table = PriceTable.from_csv(prices)
    priced = price_inputs(inputs(), table, cloud="gcp", offering="spot")
    assert compute_report(priced, ("service",)).total.cost == pytest.approx(4 * 5 + 0.5)
    missing = ReportInputs(PERIOD, (usage(SeriesKey("b", "g", "MI300X"), (1, 1), None),))
    with pytest.raises(MissingPriceError, match="'MI300X' on gcp; the table has: H100, L4"):
        price_inputs(missing, table, cloud="gcp", offering="on-demand")


# -- formats --------------------------------------------------------------------------------------


def test_focus_rows_carry_every_mandatory_column_and_valid_values() -> None:
    report = compute_report(inputs(), ("service",))
    out = io.StringIO()
    count = focus.write_focus_csv(report, out, billing_account="acme", provider="GKE")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) == 3  # alpha x 2 steps, beta x 1 (its idle hour holds no GPU)
    assert set(focus.MANDATORY_COLUMNS) <= set(rows[0])
    first = rows[0]
    assert first["ChargePeriodStart"] == "2025-01-06T00:00:00Z"
    assert first["ChargePeriodEnd"] == "2025-01-06T01:00:00Z"
    assert (first["BillingPeriodStart"], first["BillingPeriodEnd"]) == (
        "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z")
    assert (first["BilledCost"], first["PricingQuantity"], first["ListUnitPrice"]) == (
        "6", "2", "3")
    assert first["ChargeClass"] == ""
    assert json.loads(first["Tags"]) == {"team": "math", "env": "prod"}
    assert first["ResourceId"] == "reasoningservices.ponder.dev/research/alpha"


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (-0.0, "0"), (12.5, "12.5"), (1e-7, "0.0000001"), (3.0, "3"), (-2.25, "-2.25"),
])
def test_focus_numbers_have_no_exponent_and_no_plus_sign(value: float, text: str) -> None:
    assert focus.number(value) == text


def test_the_billing_period_is_the_calendar_month() -> None:
    start, end = focus.billing_month(datetime(2024, 12, 31, 23, tzinfo=UTC))
    assert (start, end) == (datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))


def test_the_html_page_is_self_contained_and_escapes_labels() -> None:
    key = SeriesKey("research", "<script>alert(1)</script>", "H100")
    data = ReportInputs(PERIOD, (usage(key, (1, 1), 1.0),), ())
    page = render_html(compute_report(data, ("service",)))
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for chart in ("chart-cost-over-time", "chart-savings", "chart-tiers"):
        assert f'id="{chart}"' in page
    assert "http" not in page


def test_csv_json_and_table_agree_on_the_totals() -> None:
    report = compute_report(inputs(), ("team",))
    rows = list(csv.DictReader(io.StringIO(format_csv(report))))
    assert [r["team"] for r in rows] == ["math", "search"]
    assert float(rows[0]["savings_usd"]) == pytest.approx(15)
    assert rows[1]["cost_per_1k_requests_usd"] == ""  # unknown, not zero
    document = report_document(report)
    assert document["total"]["cost_usd"] == 13
    assert document["by_tier"][0]["group"] == {"tier": "hard"}
    table = format_table(report)
    assert "TOTAL" in table
    assert "By difficulty tier" in table
