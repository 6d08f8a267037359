"""``ponder cost report`` against a real Prometheus holding known series.

The series are written as OpenMetrics, backfilled with ``promtool tsdb
create-blocks-from openmetrics`` and served by Debian's Prometheus; every expected figure
below is computed by hand from how the series were made. Samples are one minute apart;
minute ``k`` is ``T0 + k * 60 s``, and each sample stands for the minute that ends at it.

In the main period ``(T0, T0 + 6h]``:

- ``research/alpha`` (H100, team math): 2 ready GPUs throughout at $3/GPU-h, so 12
  GPU-hours and $36. Its router (scraped statically: no ``namespace``, service in
  ``service``) reports no demand up to minute 120, so minutes 1..120 are idle: 4
  GPU-hours, $12, as its operator's ``ponder_idle_gpu_seconds_total`` counted them. Tier
  ``easy``: 2 requests a minute (720) of 250 tokens, budget 1,024 each; tier ``hard``: 1 a
  minute (360) of 1,500 tokens, budget 16,384 each; plus 1 rejected ``easy`` request a
  minute, which does not count. Tokens 720 x 250 + 360 x 1,500 = 720,000, so $50 per 1M
  tokens; ``easy`` carries 1/4 of the cost ($9), ``hard`` 3/4 ($27). The top tier is
  ``hard`` (16,384 a request): the fixed budget would have generated 1,080 x 1,500 =
  1,620,000 tokens, $81, so the savings are $45.
- ``research/beta`` (L4, team search): 1 GPU at $1/GPU-h up to minute 180, none after:
  3 GPU-hours, $3. Its router (labelled as the chart's PodMonitor does: ``namespace`` and
  ``reasoningservice``) reports no demand from minute 151, so minutes 151..180 are idle:
  0.5 GPU-hours, $0.50, sampled from ``ponder_ready_gpus`` (its operator exports no idle
  counter). One tier, ``easy``: 180 requests of 300 tokens (54,000), so the fixed budget
  equals the actual cost and saves nothing.

In ``(T0 + 8h, T0 + 10h]`` only ``batch/gamma`` (an MI300X nobody priced) holds a GPU,
idle all along by its static router's demand gauge; it has no request counters.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from components import LOG_FILES, require
from ponder_localstack.paths import debian_tool
from ponder_localstack.proc import free_port
from ponder_localstack.prometheus import Prometheus
from ponder_operator.policy.cost import PriceTable
from ponder_tools.cli import main
from ponder_tools.costreport import focus
from ponder_tools.data import shared_data_dir

pytestmark = pytest.mark.prometheus

T0 = datetime(2025, 1, 6, tzinfo=UTC)
PRICES = shared_data_dir() / "prices" / "gpu_price_summary.csv"


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


MAIN = ["--start", at(0), "--end", at(360)]
LATER = ["--start", at(480), "--end", at(600)]

# -- the series -----------------------------------------------------------------------------

ALPHA = {"namespace": "research", "service": "alpha", "gpu_type": "H100", "team": "math",
         "department": "rnd", "env": "prod", "owner": "ada", "app": "tutor"}
BETA = {"namespace": "research", "service": "beta", "gpu_type": "L4", "team": "search",
        "env": "staging"}
GAMMA = {"namespace": "batch", "service": "gamma", "gpu_type": "MI300X", "team": "math"}


class OpenMetrics:
    """Collects samples by metric family and writes one OpenMetrics text file."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, list[str]]] = {}

    def add(self, name: str, kind: str, labels: Mapping[str, str],
            value: Callable[[int], float], minutes: range) -> None:
        family = name.removesuffix("_total") if kind == "counter" else name
        lines = self.families.setdefault(family, (kind, []))[1]
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for k in minutes:
            stamp = int((T0 + timedelta(minutes=k)).timestamp())
            lines.append(f"{name}{{{text}}} {value(k)!r} {stamp}")

    def write(self, path: Path) -> None:
        with path.open("w") as f:
            for family, (kind, lines) in self.families.items():
                f.write(f"# TYPE {family} {kind}\n")
                f.write("\n".join(lines) + "\n")
            f.write("# EOF\n")


def known_series() -> OpenMetrics:
    om = OpenMetrics()
    main_window, later_window = range(-30, 391), range(470, 611)
    # research/alpha: 2 GPUs at $3/GPU-h; counters resumed from earlier totals.
    om.add("ponder_gpu_seconds_total", "counter", ALPHA, lambda k: 10_000.0 + 120 * k,
           main_window)
    om.add("ponder_cost_total", "counter", ALPHA, lambda k: 50 + 0.1 * k, main_window)
    om.add("ponder_ready_gpus", "gauge", ALPHA, lambda k: 2.0, main_window)
    om.add("ponder_idle_gpu_seconds_total", "counter", ALPHA,  # idle up to minute 120
           lambda k: 120.0 * (min(k, 120) + 30), main_window)
    om.add("ponder_hourly_cost", "gauge", ALPHA, lambda k: 6.0, main_window)
    static = {"service": "alpha", "job": "router-alpha"}
    om.add("ponder_router_demand_tokens", "gauge", static,
           lambda k: 0.0 if k <= 120 else 500.0, main_window)
    for tier, outcome, per_minute in (("easy", "ok", 2), ("easy", "rejected", 1),
                                      ("hard", "ok", 1)):
        om.add("ponder_router_requests_total", "counter",
               {**static, "tier": tier, "outcome": outcome},
               lambda k, n=per_minute: 1000.0 + n * k, main_window)
    for tier, tokens, budget in (("easy", 2 * 250, 2 * 1024), ("hard", 1500, 16384)):
        om.add("ponder_router_used_tokens_total", "counter", {**static, "tier": tier},
               lambda k, n=tokens: 100_000.0 + n * k, main_window)
        om.add("ponder_router_budget_tokens_total", "counter", {**static, "tier": tier},
               lambda k, n=budget: 1_000_000.0 + n * k, main_window)
    # research/beta: 1 GPU at $1/GPU-h up to minute 180, then scaled to zero.
    om.add("ponder_gpu_seconds_total", "counter", BETA,
           lambda k: 5000.0 + 60 * min(k, 180), main_window)
    om.add("ponder_cost_total", "counter", BETA, lambda k: 20 + min(k, 180) / 60,
           main_window)
    om.add("ponder_ready_gpus", "gauge", BETA, lambda k: 1.0 if k <= 180 else 0.0,
           main_window)
    chart = {"namespace": "research", "reasoningservice": "beta", "job": "routers"}
    om.add("ponder_router_demand_tokens", "gauge", {**chart, "service": "beta"},
           lambda k: 0.0 if k >= 151 else 200.0, main_window)
    om.add("ponder_router_requests_total", "counter", {**chart, "tier": "easy", "outcome": "ok"},
           lambda k: 100.0 + min(k, 180), main_window)
    om.add("ponder_router_used_tokens_total", "counter", {**chart, "tier": "easy"},
           lambda k: 10_000.0 + 300 * min(k, 180), main_window)
    om.add("ponder_router_budget_tokens_total", "counter", {**chart, "tier": "easy"},
           lambda k: 10_000.0 + 1024 * min(k, 180), main_window)
    # batch/gamma, later: one GPU, no price, no idle counter; a static router that only
    # ever reports no demand (so it is idle all along), and no request counters.
    om.add("ponder_gpu_seconds_total", "counter", GAMMA, lambda k: 60.0 * (k - 470),
           later_window)
    om.add("ponder_ready_gpus", "gauge", GAMMA, lambda k: 1.0, later_window)
    om.add("ponder_router_demand_tokens", "gauge", {"service": "gamma", "job": "router-gamma"},
           lambda k: 0.0, later_window)
    return om


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus over a TSDB backfilled by promtool with ``known_series``."""
    state = tmp_path_factory.mktemp("cost-report-prometheus")
    source = state / "series.om"
    known_series().write(source)
    promtool = require(lambda: debian_tool("promtool"))
    subprocess.run([str(promtool), "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                    str(source), str(state / "data")], check=True, timeout=120)
    server = Prometheus(state, scrape_interval_seconds=60.0)
    LOG_FILES.append(state / "prometheus.log")
    require(server.start)
    yield server
    server.stop()


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def ponder(prometheus: Prometheus, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run ``ponder cost report`` in-process against the fixture's Prometheus."""

    def run(*args: str, url: str | None = None) -> Run:
        capsys.readouterr()
        code = main(["cost", "report", "--prometheus", url or prometheus.url, *args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def report_json(ponder: Callable[..., Run], *args: str) -> dict[str, object]:
    run = ponder(*MAIN, "--format", "json", *args)
    assert run.code == 0, run.err
    document: dict[str, object] = json.loads(run.out)
    return document


def rows_by(document: Mapping[str, object], key: str = "rows") -> dict[tuple[str, ...], dict]:
    rows = document[key]
    assert isinstance(rows, list)
    return {tuple(r["group"].values()): r for r in rows}


# -- figures ------------------------------------------------------------------------------------


def test_the_report_matches_the_hand_computed_figures(ponder: Callable[..., Run]) -> None:
    document = report_json(ponder)
    assert document["period"] == {"start": at(0), "end": at(360), "step_seconds": 300,
                                  "resolution_seconds": 60}
    rows = rows_by(document)
    alpha, beta = rows[("research", "alpha")], rows[("research", "beta")]
    assert list(rows) == [("research", "alpha"), ("research", "beta")]  # by cost
    expected_alpha = {
        "gpu_hours": 12, "cost_usd": 36, "idle_gpu_hours": 4, "idle_cost_usd": 12,
        "idle_share": 1 / 3, "requests": 1080, "generated_tokens": 720_000,
        "budget_tokens": 720 * 1024 + 360 * 16384, "cost_per_1k_requests_usd": 36 / 1.08,
        "cost_per_1m_tokens_usd": 50, "fixed_budget_tokens": 1_620_000,
        "fixed_budget_cost_usd": 81, "savings_usd": 45, "savings_share": 45 / 81,
    }
    expected_beta = {
        "gpu_hours": 3, "cost_usd": 3, "idle_gpu_hours": 0.5, "idle_cost_usd": 0.5,
        "requests": 180, "generated_tokens": 54_000, "cost_per_1m_tokens_usd": 3 / 0.054,
        "fixed_budget_cost_usd": 3, "savings_usd": 0,
    }
    for row, expected in ((alpha, expected_alpha), (beta, expected_beta)):
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
    total = document["total"]
    assert isinstance(total, dict)
    assert total["cost_usd"] == pytest.approx(39)
    assert total["idle_cost_usd"] == pytest.approx(12.5)
    assert total["cost_per_1k_requests_usd"] == pytest.approx(39 / 1.26)
    assert total["cost_per_1m_tokens_usd"] == pytest.approx(39 / 0.774)
    assert total["savings_usd"] == pytest.approx(45)
    services = {s["service"]: s for s in document["services"]}  # type: ignore[attr-defined]
    assert services["research/alpha"]["top_tier"] == "hard"
    assert services["research/alpha"]["top_tier_tokens_per_request"] == pytest.approx(1500)
    assert document["warnings"] == []


def test_cost_is_split_over_tiers_by_generated_tokens(ponder: Callable[..., Run]) -> None:
    rows = rows_by(report_json(ponder, "--group-by", "team,tier"))
    assert set(rows) == {("math", "easy"), ("math", "hard"), ("search", "easy")}
    assert rows[("math", "easy")]["cost_usd"] == pytest.approx(9)
    assert rows[("math", "hard")]["cost_usd"] == pytest.approx(27)
    assert rows[("math", "hard")]["gpu_hours"] == pytest.approx(9)
    assert rows[("math", "easy")]["requests"] == pytest.approx(720)
    assert rows[("math", "easy")]["savings_usd"] == pytest.approx(
        (720 * 1500 - 180_000) * 36 / 720_000)
    assert rows[("math", "hard")]["savings_usd"] == pytest.approx(0)
    assert rows[("search", "easy")]["cost_usd"] == pytest.approx(3)


@pytest.mark.parametrize(("group_by", "expected"), [
    ("gpu-type", {("H100",): 36, ("L4",): 3}),
    ("label:team", {("math",): 36, ("search",): 3}),
    ("env,owner", {("prod", "ada"): 36, ("staging", ""): 3}),
    ("tier", {("easy",): 12, ("hard",): 27}),
])
def test_any_dimension_groups_the_cost(
    ponder: Callable[..., Run], group_by: str, expected: dict[tuple[str, ...], float],
) -> None:
    run = ponder(*MAIN, "--format", "csv", "--group-by", group_by)
    assert run.code == 0, run.err
    reader = list(csv.DictReader(io.StringIO(run.out)))
    width = len(next(iter(expected)))
    dims = list(reader[0])[:width]
    got = {tuple(r[d] for d in dims): float(r["cost_usd"]) for r in reader}
    assert got == pytest.approx(expected)


def test_the_table_shows_a_progress_bar_and_the_totals(ponder: Callable[..., Run]) -> None:
    run = ponder(*MAIN, "--progress", "always", "--group-by", "team")
    assert run.code == 0, run.err
    assert re.search(r"querying Prometheus \[#+\] (\d+)/\1", run.err)
    lines = run.out.splitlines()
    total = next(line for line in lines if line.startswith("TOTAL"))
    for figure in ("$39.00", "$12.50", "$45.00"):  # cost, idle cost, savings
        assert figure in total
    assert any(line.startswith("hard") and "$27.00" in line for line in lines)
    assert "top tier's budget" in run.out


def test_a_price_table_reprices_every_gpu_hour(ponder: Callable[..., Run]) -> None:
    table = PriceTable.from_csv(PRICES)
    h100, l4 = table.lookup("gcp", "H100", "on-demand"), table.lookup("gcp", "L4", "on-demand")
    document = report_json(ponder, "--pricing", str(PRICES), "--cloud", "gcp")
    rows = rows_by(document)
    assert rows[("research", "alpha")]["cost_usd"] == pytest.approx(12 * h100)
    assert rows[("research", "alpha")]["idle_cost_usd"] == pytest.approx(4 * h100)
    assert rows[("research", "beta")]["cost_usd"] == pytest.approx(3 * l4)
    assert document["priced_from"] == "price table (gcp on-demand)"


# -- FOCUS ---------------------------------------------------------------------------------------

# FOCUS 1.2 (FinOps Open Cost and Usage Specification), specification/columns/*.md:
# the Mandatory columns with their data type and whether they allow nulls.
FOCUS_MANDATORY = {
    "BilledCost": ("Decimal", False), "BillingAccountId": ("String", False),
    "BillingAccountName": ("String", True), "BillingCurrency": ("Currency", False),
    "BillingPeriodEnd": ("DateTime", False), "BillingPeriodStart": ("DateTime", False),
    "ChargeCategory": ("String", False), "ChargeClass": ("String", True),
    "ChargeDescription": ("String", True), "ChargePeriodEnd": ("DateTime", False),
    "ChargePeriodStart": ("DateTime", False), "ContractedCost": ("Decimal", False),
    "EffectiveCost": ("Decimal", False), "InvoiceIssuerName": ("String", False),
    "ListCost": ("Decimal", False), "PricingQuantity": ("Decimal", True),
    "PricingUnit": ("String", True), "ProviderName": ("String", False),
    "PublisherName": ("String", False), "ServiceCategory": ("String", False),
    "ServiceName": ("String", False),
}
FOCUS_OTHER = {
    "ChargeFrequency": ("String", False), "ConsumedQuantity": ("Decimal", True),
    "ConsumedUnit": ("String", True), "ContractedUnitPrice": ("Decimal", True),
    "ListUnitPrice": ("Decimal", True), "ResourceId": ("String", True),
    "ResourceName": ("String", True), "ResourceType": ("String", True),
    "ServiceSubcategory": ("String", False), "SubAccountId": ("String", True),
    "SubAccountName": ("String", True), "Tags": ("KeyValue", True),
}
FOCUS_ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {"Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "ServiceCategory": {
        "AI and Machine Learning", "Analytics", "Business Applications", "Compute",
        "Databases", "Developer Tools", "Multicloud", "Identity", "Integration",
        "Internet of Things", "Management and Governance", "Media", "Migration", "Mobile",
        "Networking", "Security", "Storage", "Web", "Other"},
}
NUMERIC = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?(E-?\d+)?$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def focus_problems(header: list[str], rows: list[dict[str, str]]) -> list[str]:
    """Every violation of the FOCUS 1.2 rules above in a CSV (empty field = null)."""
    problems = [f"missing mandatory column {c}" for c in FOCUS_MANDATORY if c not in header]
    known = {**FOCUS_MANDATORY, **FOCUS_OTHER}
    focus_part = [c for c in header if not c.startswith("x_")]
    problems += [f"unknown non-custom column {c}" for c in focus_part if c not in known]
    if header[:len(focus_part)] != focus_part:
        problems.append("custom x_ columns must come after every FOCUS column")
    for n, row in enumerate(rows):
        def bad(message: str, n: int = n) -> None:
            problems.append(f"row {n}: {message}")

        for column, (kind, nullable) in known.items():
            if column not in row:
                continue
            value = row[column]
            if value == "":
                if not nullable:
                    bad(f"{column} is null")
                continue
            if value.strip() != value or not value.strip():
                bad(f"{column} has padding: {value!r}")
            if kind == "Decimal" and not NUMERIC.match(value):
                bad(f"{column} is not a FOCUS number: {value!r}")
            if kind == "DateTime" and not DATETIME.match(value):
                bad(f"{column} is not YYYY-MM-DDTHH:mm:ssZ: {value!r}")
            if kind == "Currency" and not re.fullmatch(r"[A-Z]{3}", value):
                bad(f"{column} is not an ISO 4217 code: {value!r}")
            if kind == "KeyValue":
                parsed = json.loads(value)
                if not isinstance(parsed, dict) or any(
                        isinstance(v, dict | list) for v in parsed.values()):
                    bad(f"{column} is not a flat JSON object: {value!r}")
            if column in FOCUS_ALLOWED and value not in FOCUS_ALLOWED[column]:
                bad(f"{column} {value!r} is not an allowed value")
        if row["ChargeCategory"] in {"Usage", "Purchase"} and row["ChargeClass"] != "Correction":
            for column in ("PricingQuantity", "ListUnitPrice", "ContractedUnitPrice"):
                if column in row and row[column] == "":
                    bad(f"{column} must not be null for a {row['ChargeCategory']} charge")
        for quantity, unit in (("PricingQuantity", "PricingUnit"),
                               ("ConsumedQuantity", "ConsumedUnit")):
            if (row.get(quantity, "") == "") != (row.get(unit, "") == ""):
                bad(f"{unit} must be null exactly when {quantity} is")
        for price, cost in (("ListUnitPrice", "ListCost"),
                            ("ContractedUnitPrice", "ContractedCost")):
            if row.get(price) and row["PricingQuantity"] and not math.isclose(
                    float(row[price]) * float(row["PricingQuantity"]), float(row[cost]),
                    rel_tol=1e-6, abs_tol=1e-6):
                bad(f"{price} x PricingQuantity != {cost}")
        if not row["ChargePeriodStart"] < row["ChargePeriodEnd"]:
            bad("ChargePeriodStart must be before ChargePeriodEnd")
        if not row["BillingPeriodStart"] <= row["ChargePeriodStart"] < row["BillingPeriodEnd"]:
            bad("the charge must start inside its billing period")
    return problems


def test_the_focus_export_passes_the_focus_column_validator(
    ponder: Callable[..., Run], tmp_path: Path,
) -> None:
    target = tmp_path / "focus.csv"
    run = ponder(*MAIN, "--format", "focus", "--output", str(target))
    assert run.code == 0, run.err
    with target.open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    assert focus_problems(header, rows) == []
    assert set(focus.MANDATORY_COLUMNS) <= set(header)
    assert all(c.startswith("x_") for c in header[len(focus.FOCUS_COLUMNS):])
    assert sum(float(r["BilledCost"]) for r in rows) == pytest.approx(39)
    assert sum(float(r["ConsumedQuantity"]) for r in rows) == pytest.approx(15)
    assert sum(float(r["x_Savings"]) for r in rows) == pytest.approx(45)
    alpha = [r for r in rows if r["ResourceName"] == "alpha"]
    assert len(alpha) == 72  # 6 h in 5-minute charge periods
    assert json.loads(alpha[0]["Tags"]) == {"app": "tutor", "department": "rnd",
                                            "env": "prod", "owner": "ada", "team": "math"}


def test_the_validator_catches_a_broken_focus_row() -> None:
    header = [*focus.FOCUS_COLUMNS]
    good = dict.fromkeys(header, "") | {
        "BilledCost": "1", "BillingAccountId": "a", "BillingCurrency": "USD",
        "BillingPeriodStart": "2025-01-01T00:00:00Z", "BillingPeriodEnd": "2025-02-01T00:00:00Z",
        "ChargeCategory": "Usage", "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": "2025-01-06T00:00:00Z", "ChargePeriodEnd": "2025-01-06T01:00:00Z",
        "ContractedCost": "1", "EffectiveCost": "1", "InvoiceIssuerName": "k", "ListCost": "1",
        "PricingQuantity": "1", "PricingUnit": "GPU-Hours", "ProviderName": "k",
        "PublisherName": "p", "ServiceCategory": "AI and Machine Learning", "ServiceName": "s",
        "ServiceSubcategory": "Generative AI", "ListUnitPrice": "1", "ContractedUnitPrice": "1",
    }
    assert focus_problems(header, [good]) == []
    broken = good | {"ChargeCategory": "Spend", "BilledCost": "+1", "ChargePeriodEnd": "",
                     "ListUnitPrice": "2"}
    problems = " ".join(focus_problems(header, [broken]))
    for needle in ("ChargeCategory 'Spend'", "BilledCost is not a FOCUS number",
                   "ChargePeriodEnd is null", "ListUnitPrice x PricingQuantity"):
        assert needle in problems


# -- HTML in a real browser ----------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--enable-logging=stderr",
                  "--v=0", "--hide-scrollbars")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require(lambda: debian_tool("chromium"))
    profile = tmp_path / f"chromium-profile-{free_port()}"
    profile.mkdir()
    return subprocess.run([str(binary), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "Uncaught" in line or ("CONSOLE" in line and ":ERROR:" in line)
            or "console.error" in line]


@pytest.mark.chromium
def test_the_html_report_renders_its_charts_in_headless_chromium(
    ponder: Callable[..., Run], tmp_path: Path,
) -> None:
    page = tmp_path / "report.html"
    run = ponder(*MAIN, "--format", "html", "--output", str(page), "--group-by", "team,tier")
    assert run.code == 0, run.err
    html = page.read_text()
    for reference in ("http", "src=", "@import", "url("):  # nothing loads from anywhere
        assert reference not in html

    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=3000", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    assert 'data-rendered="yes"' in dom.stdout  # the inline script ran to its end
    assert 'data-charts="3"' in dom.stdout
    for chart in ("chart-cost-over-time", "chart-savings", "chart-tiers"):
        svg = re.search(rf'<svg id="{chart}".*?</svg>', dom.stdout, re.S)
        assert svg is not None, chart
        assert 'class="series' in svg.group(0), chart
    assert "$39.00" in dom.stdout

    shot = tmp_path / "report.png"
    taken = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1800",
                     page.as_uri())
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert console_errors(taken.stderr) == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


@pytest.mark.chromium
def test_console_errors_are_detected_in_a_broken_page(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    run = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert console_errors(run.stderr), run.stderr[-2000:]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "code", "message"), [
    pytest.param(["--group-by", "namespace,colour"], 2,
                 "unknown --group-by 'colour': choose from namespace, service, team",
                 id="unknown group-by label"),
    pytest.param(["--start", "2024-06-01T00:00:00Z", "--end", "2024-06-02T00:00:00Z"], 1,
                 "no ponder_gpu_seconds_total series between 2024-06-01T00:00:00Z",
                 id="empty period"),
    pytest.param(["--start", at(60), "--end", at(0)], 2, "empty period: --start",
                 id="end before start"),
    pytest.param([*LATER, "--pricing", str(PRICES)], 2,
                 "no on-demand price for GPU type 'MI300X' on gcp",
                 id="price table missing a GPU type"),
    pytest.param(LATER, 2, "service(s) held GPUs with no ponder_cost_total",
                 id="unpriced service"),
    pytest.param(["--since", "7 days"], 2, "bad duration '7 days'", id="bad duration"),
    pytest.param(["--pricing", "/nonexistent/prices.csv"], 2,
                 "cannot read the price table /nonexistent/prices.csv", id="no price table"),
])
def test_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(
    ponder: Callable[..., Run], args: list[str], code: int, message: str,
) -> None:
    run = ponder(*(MAIN if "--start" not in args and "--since" not in args else []), *args)
    assert run.code == code
    assert run.out == ""
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert run.err.startswith("ponder cost report: ")
    assert message in run.err


def test_an_unreachable_prometheus_is_one_line_and_exit_1(ponder: Callable[..., Run]) -> None:
    run = ponder(*MAIN, "--timeout", "3", url=f"http://127.0.0.1:{free_port()}")
    assert run.code == 1
    assert run.out == ""
    assert len(run.err.strip().splitlines()) == 1
    assert "cannot reach Prometheus at http://127.0.0.1:" in run.err


def test_a_service_without_router_metrics_is_a_warning_not_a_silent_zero(
    ponder: Callable[..., Run], tmp_path: Path,
) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("cloud,accelerator,accelerator_count,ondemand_per_gpu_median,spot_median\n"
                      "azure,MI300X,8,6.0,\n")
    run = ponder(*LATER, "--pricing", str(prices), "--cloud", "azure", "--format", "json")
    assert run.code == 0, run.err
    document = json.loads(run.out)
    assert document["total"]["cost_usd"] == pytest.approx(2 * 6.0)
    assert document["total"]["idle_gpu_hours"] == pytest.approx(2)
    assert document["total"]["cost_per_1k_requests_usd"] is None  # unknown, not zero
    assert document["warnings"] == ["batch/gamma: no router metrics (requests, tokens) in "
                                    "the period"]
    assert "warning: batch/gamma: no router metrics" in run.err
