"""``ponder cost report``: GPU cost, idle cost and test-time-compute savings from Prometheus.

Role: the command-line face of the cost report; ``ponder_tools.cli`` registers it
through ``add_cost_parser``. ``query`` reads Prometheus, ``model`` computes, and this
module formats: a terminal table (with a progress bar on stderr while querying), CSV,
JSON, a FOCUS 1.2 CSV (``focus``) or a self-contained HTML page (``html``).

    ponder cost report --prometheus http://prometheus:9090 --since 7d \\
        --group-by namespace,team --format table
    ponder cost report --start 2025-01-01T00:00:00Z --end 2025-02-01T00:00:00Z \\
        --format focus --output january.csv

Bad input (an unreachable Prometheus, an empty period, an unknown ``--group-by``, a GPU
type the price table lacks) is one line on stderr and a non-zero exit, never a zero report.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ponder_operator.policy.cost import PriceTable

from .focus import write_focus_csv
from .html import money, render_html
from .model import (
    DEFINITIONS,
    CostReportError,
    Figures,
    Report,
    ReportInputError,
    Row,
    compute_report,
    parse_group_by,
    price_inputs,
    resolve_period,
)
from .query import fetch_inputs

FORMATS = ("table", "csv", "json", "focus", "html")
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
MAX_WARNINGS_SHOWN = 10


def add_cost_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``cost report`` on the ``ponder`` command's ``subparsers``."""
    cost = subparsers.add_parser("cost", help="GPU cost reports from Prometheus",
                                 description="GPU cost of ReasoningServices.")
    commands = cost.add_subparsers(dest="cost_command", required=True)
    parser = commands.add_parser(
        "report",
        help="GPU-hours, cost, idle cost, cost per request and token, savings",
        description="Report GPU-hours, cost, idle cost, cost per 1,000 requests and per 1M "
                    "generated tokens, cost by difficulty tier and the savings against "
                    "giving every request the top tier's budget, from the operator's and "
                    "the routers' metrics in Prometheus.",
    )
    parser.add_argument("--prometheus", default=os.environ.get("PONDER_PROMETHEUS_URL")
                        or DEFAULT_PROMETHEUS,
                        help="Prometheus URL (default: $PONDER_PROMETHEUS_URL or "
                             f"{DEFAULT_PROMETHEUS})")
    parser.add_argument("--since", default=None,
                        help="period ending now, e.g. 24h, 7d, 30d (default: 7d)")
    parser.add_argument("--start", default=None, help="period start, RFC 3339")
    parser.add_argument("--end", default=None, help="period end, RFC 3339 (default: now)")
    parser.add_argument("--group-by", default="namespace,service",
                        help="comma-separated: namespace, service, team, department, env, "
                             "owner, app, gpu_type, tier (default: namespace,service)")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="output format (default: table)")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the report to this file instead of stdout")
    parser.add_argument("--step", default=None,
                        help="time step of the series, FOCUS rows and charts "
                             "(default: chosen for at most 200 steps)")
    parser.add_argument("--resolution", default="1m",
                        help="sampling interval of the idle measurement (default: 1m)")
    parser.add_argument("--pricing", type=Path, default=None,
                        help="price every service's GPU-hours from this table "
                             "(gpu_price_summary.csv columns) instead of ponder_cost_total")
    parser.add_argument("--cloud", default="gcp", help="cloud of --pricing (default: gcp)")
    parser.add_argument("--offering", choices=("on-demand", "spot"), default="on-demand",
                        help="price of --pricing (default: on-demand)")
    parser.add_argument("--billing-account", default="ponder",
                        help="FOCUS BillingAccountId (default: ponder)")
    parser.add_argument("--provider", default="Kubernetes",
                        help="FOCUS ProviderName and InvoiceIssuerName (default: Kubernetes)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for one Prometheus query (default: 120)")
    parser.add_argument("--parallel", type=int, default=4,
                        help="queries in flight at once (default: 4)")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress bar on stderr: auto = table format on a terminal")
    parser.set_defaults(run=run_report)


class ProgressBar:
    """``querying Prometheus [#####-----] 5/10`` redrawn in place on ``stream``."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = round(self.width * done / max(total, 1))
        self.stream.write(f"\rquerying Prometheus [{'#' * filled}{'-' * (self.width - filled)}]"
                          f" {done}/{total}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}".rstrip("0").rstrip(".") or "0"


FIGURE_COLUMNS: tuple[tuple[str, Callable[[Figures], float | None]], ...] = (
    ("gpu_hours", lambda f: f.gpu_hours),
    ("cost_usd", lambda f: f.cost),
    ("idle_gpu_hours", lambda f: f.idle_gpu_hours),
    ("idle_cost_usd", lambda f: f.idle_cost),
    ("idle_share", lambda f: f.idle_share),
    ("requests", lambda f: f.requests),
    ("generated_tokens", lambda f: f.used_tokens),
    ("budget_tokens", lambda f: f.budget_tokens),
    ("cost_per_1k_requests_usd", lambda f: f.cost_per_1k_requests),
    ("cost_per_1m_tokens_usd", lambda f: f.cost_per_1m_tokens),
    ("fixed_budget_tokens", lambda f: f.fixed_budget_tokens),
    ("fixed_budget_cost_usd", lambda f: f.fixed_budget_cost),
    ("savings_usd", lambda f: f.savings),
    ("savings_share", lambda f: f.savings_share),
)


def format_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report.group_by, *(name for name, _ in FIGURE_COLUMNS)])
    for row in report.rows:
        writer.writerow([*row.group, *(_number(get(row.figures)) for _, get in FIGURE_COLUMNS)])
    return out.getvalue()


def _figures_json(f: Figures) -> dict[str, float | None]:
    return {name: None if (v := get(f)) is None else round(v, 9) for name, get in FIGURE_COLUMNS}


def report_document(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data."""
    period = report.period

    def rows(items: Sequence[Row], dims: Sequence[str]) -> list[dict[str, Any]]:
        return [{"group": dict(zip(dims, r.group, strict=True)), **_figures_json(r.figures)}
                for r in items]

    return {
        "period": {"start": period.start.isoformat().replace("+00:00", "Z"),
                   "end": period.end.isoformat().replace("+00:00", "Z"),
                   "step_seconds": period.step_seconds,
                   "resolution_seconds": period.resolution_seconds},
        "priced_from": report.priced_from,
        "currency": "USD",
        "group_by": list(report.group_by),
        "total": _figures_json(report.total),
        "rows": rows(report.rows, report.group_by),
        "by_tier": rows(report.by_tier, ("tier",)),
        "services": [{"service": s.service_id, "top_tier": s.top_tier,
                      "top_tier_tokens_per_request": s.top_tier_tokens_per_request,
                      "cost_per_generated_token_usd": s.cost_per_token}
                     for s in report.services],
        "cost_over_time": {
            "step_ends": [period.step_end(i).isoformat().replace("+00:00", "Z")
                          for i in range(period.steps)],
            "by_service": {sid: [round(v, 9) for v in values]
                           for sid, values in report.cost_over_time},
            "actual": [round(v, 9) for v in report.actual_over_time],
            "fixed_budget": [round(v, 9) for v in report.fixed_budget_over_time],
        },
        "definitions": dict(DEFINITIONS),
        "warnings": list(report.warnings),
    }


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 left: int) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _figure_cells(f: Figures) -> list[str]:
    return [f"{f.gpu_hours:,.2f}", money(f.cost), money(f.idle_cost), _share(f.idle_share),
            _count(f.requests), money(f.cost_per_1k_requests), _count(f.used_tokens),
            money(f.cost_per_1m_tokens), money(f.fixed_budget_cost), money(f.savings)]


FIGURE_HEADERS = ("GPU-H", "COST", "IDLE", "IDLE%", "REQUESTS", "$/1K REQ", "TOKENS",
                  "$/1M TOK", "FIXED-BUDGET", "SAVINGS")


def format_table(report: Report) -> str:
    period = report.period
    dims = report.group_by
    lines = [
        f"Ponder GPU cost {period.start:%Y-%m-%d %H:%M} -> {period.end:%Y-%m-%d %H:%M} UTC "
        f"(step {period.step_seconds // 60} min, idle sampled every "
        f"{period.resolution_seconds} s, priced from {report.priced_from})", ""]
    body = [[v or "(unset)" for v in r.group] + _figure_cells(r.figures) for r in report.rows]
    body.append(["TOTAL", *[""] * (len(dims) - 1), *_figure_cells(report.total)])
    lines += _table_lines([d.upper() for d in dims] + list(FIGURE_HEADERS), body, len(dims))
    if report.group_by != ("tier",):
        tiers = [[r.group[0], *_figure_cells(r.figures)] for r in report.by_tier]
        lines += ["", "By difficulty tier (a service's cost split by the tokens each tier "
                      "generated):"]
        lines += _table_lines(["TIER", *FIGURE_HEADERS], tiers, 1)
    total = report.total
    lines += ["", f"Savings versus a fixed budget: {money(total.savings)} "
                  f"({_share(total.savings_share)} of {money(total.fixed_budget_cost)}): what "
                  "the same requests would have cost had each been given the top tier's "
                  "budget (requests x the top tier's measured tokens per request, at the "
                  "service's cost per generated token)."]
    return "\n".join(lines) + "\n"


def _write(path: Path | None, text: str) -> None:
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _load_prices(path: Path) -> PriceTable:
    try:
        table = PriceTable.from_csv(path)
    except OSError as exc:
        raise ReportInputError(f"cannot read the price table {path}: "
                               f"{exc.strerror or exc}") from exc
    except KeyError as exc:
        raise ReportInputError(f"the price table {path} has no column {exc}") from exc
    except ValueError as exc:
        raise ReportInputError(f"the price table {path} holds a bad number: {exc}") from exc
    if not table.prices:
        raise ReportInputError(f"the price table {path} holds no prices")
    return table


def build_report(args: argparse.Namespace, now: datetime) -> Report:
    """Validate the arguments, query Prometheus and compute the report."""
    group_by = parse_group_by(args.group_by)
    since = args.since
    if since is None and args.start is None:
        if args.end is not None:
            raise ReportInputError("--end needs --start (or give --since alone)")
        since = "7d"
    period = resolve_period(now=now, since=since, start=args.start, end=args.end,
                            step=args.step, resolution=args.resolution)
    table = _load_prices(args.pricing) if args.pricing is not None else None
    show = args.progress == "always" or (
        args.progress == "auto" and args.format == "table" and sys.stderr.isatty())
    bar = ProgressBar(sys.stderr) if show else None
    try:
        inputs = fetch_inputs(args.prometheus, period, timeout_seconds=args.timeout,
                              parallel=args.parallel, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if table is not None:
        inputs = price_inputs(inputs, table, cloud=args.cloud, offering=args.offering)
    return compute_report(inputs, group_by)


def run_report(args: argparse.Namespace) -> int:
    """Run ``ponder cost report``; 0 on success, 1 or 2 (bad input) with one line on stderr."""
    now = datetime.now(UTC)
    try:
        report = build_report(args, now)
        if args.format == "focus":
            out = io.StringIO()
            write_focus_csv(report, out, billing_account=args.billing_account,
                            provider=args.provider)
            text = out.getvalue()
        elif args.format == "html":
            text = render_html(report, generated_at=now)
        elif args.format == "json":
            text = json.dumps(report_document(report), indent=1) + "\n"
        elif args.format == "csv":
            text = format_csv(report)
        else:
            text = format_table(report)
        _write(args.output, text)
    except CostReportError as exc:
        print(f"ponder cost report: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"ponder cost report: cannot write {args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    for warning in report.warnings[:MAX_WARNINGS_SHOWN]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(report.warnings) > MAX_WARNINGS_SHOWN:
        print(f"warning: ... and {len(report.warnings) - MAX_WARNINGS_SHOWN} more",
              file=sys.stderr)
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
