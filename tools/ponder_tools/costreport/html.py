"""A self-contained HTML cost report: inline CSS, inline SVG charts, a little inline script.

Role: ``ponder cost report --format html`` (``cli``) writes ``render_html(report)``. The
page loads nothing from anywhere (no external URL, font or script): the charts are SVG
drawn here, the script only adds hover tips and sortable tables, then marks the page
``data-rendered="yes"`` so a headless browser can tell it ran. Charts:

- ``#chart-cost-over-time``: cost per step, stacked by service (the top services by cost,
  the rest as "other");
- ``#chart-savings``: cumulative actual cost against the fixed-budget counterfactual;
- ``#chart-tiers``: cost by difficulty tier, with cost per 1,000 requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from .model import DEFINITIONS, Figures, Report

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
TOP_SERVICES = 8
WIDTH, HEIGHT = 860, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 16, 40
MAX_WARNINGS = 20

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;
color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6475;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px 14px;
min-width:150px}
.card .v{font-size:20px;font-weight:600}.card .k{font-size:12px;color:#5b6475}
svg.chart{background:#fff;border:1px solid #dde1e8;border-radius:8px}
svg text{font-size:11px;fill:#5b6475}
.legend{font-size:12px;margin:6px 0}.legend span{margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:right}
th{background:#eef1f5;cursor:pointer}td.k,th.k{text-align:left}
dl{font-size:13px}dt{font-weight:600}dd{margin:0 0 6px 16px;color:#3d4556}
#tip{position:fixed;pointer-events:none;background:#1d2330;color:#fff;font-size:12px;
padding:4px 8px;border-radius:4px;display:none}
.warn{font-size:13px;color:#8a5300}
"""

_SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  document.querySelectorAll("[data-tip]").forEach(function (el) {
    el.addEventListener("mousemove", function (ev) {
      tip.textContent = el.getAttribute("data-tip");
      tip.style.display = "block";
      tip.style.left = (ev.clientX + 12) + "px";
      tip.style.top = (ev.clientY + 12) + "px";
    });
    el.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var rows = Array.prototype.slice.call(body.rows);
        var desc = th.getAttribute("data-desc") !== "1";
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
          var nx = parseFloat(x), ny = parseFloat(y);
          var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
          return desc ? -c : c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        th.setAttribute("data-desc", desc ? "1" : "0");
      });
    });
  });
  var charts = document.querySelectorAll("svg.chart");
  document.documentElement.setAttribute("data-charts", String(charts.length));
  document.documentElement.setAttribute("data-rendered", "yes");
})();
"""


def money(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:.2g}"


def _axis_money(value: float) -> str:
    """Short USD for an axis: $250k, $1.5M."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"${value / scale:g}{suffix}"
    return f"${value:g}"


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _count(value: float) -> str:
    if value >= 1e9:
        return f"{value / 1e9:.2f}B"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:,.0f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value:
            return float(factor * power)
    return float(10 * power)


def _plot_area() -> tuple[float, float, float, float]:
    return (MARGIN_LEFT, MARGIN_TOP, WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
            HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)


def _axes(y_max: float, times: Sequence[datetime]) -> list[str]:
    """Grid, y labels (USD) and a few time labels under the x axis."""
    x0, y0, w, h = _plot_area()
    parts: list[str] = []
    for k in range(5):
        value = y_max * k / 4
        y = y0 + h - h * k / 4
        parts.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eef1f5"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(_axis_money(value))}</text>')
    n = len(times)
    if n:
        span_hours = (times[-1] - times[0]).total_seconds() / 3600 if n > 1 else 0
        fmt = "%H:%M" if span_hours <= 36 else "%m-%d"
        for k in range(min(n, 6)):
            index = round(k * (n - 1) / max(1, min(n, 6) - 1))
            x = x0 + (w * index / (n - 1) if n > 1 else w / 2)
            parts.append(f'<text x="{x:.1f}" y="{y0 + h + 16}" text-anchor="middle">'
                         f'{escape(times[index].strftime(fmt))}</text>')
    parts.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y0 + h}" y2="{y0 + h}" '
                 f'stroke="#8a93a5"/>')
    return parts


def _x(index: int, n: int) -> float:
    x0, _, w, _ = _plot_area()
    return x0 + (w * index / (n - 1) if n > 1 else w / 2)


def _y(value: float, y_max: float) -> float:
    _, y0, _, h = _plot_area()
    return y0 + h - h * (value / y_max if y_max > 0 else 0)


def _svg(chart_id: str, label: str, body: Sequence[str]) -> str:
    return (f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(label)}" '
            f'width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}">' + "".join(body) + "</svg>")


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{color}"></i>{escape(name)}</span>'
        for name, color in items) + "</div>"


def cost_over_time_chart(report: Report) -> str:
    """Stacked areas of cost per step, one per top service and one for the rest."""
    period = report.period
    n = period.steps
    times = [period.step_end(i) for i in range(n)]
    top = list(report.cost_over_time[:TOP_SERVICES])
    rest = report.cost_over_time[TOP_SERVICES:]
    if rest:
        top.append((f"other ({len(rest)} services)",
                    tuple(sum(values[i] for _, values in rest) for i in range(n))))
    totals = [sum(values[i] for _, values in top) for i in range(n)]
    y_max = _nice_max(max(totals, default=0.0))
    body = _axes(y_max, times)
    below = [0.0] * n
    legend: list[tuple[str, str]] = []
    for k, (name, values) in enumerate(top):
        color = PALETTE[k % len(PALETTE)]
        above = [below[i] + values[i] for i in range(n)]
        upper = [f"{_x(i, n):.1f},{_y(above[i], y_max):.1f}" for i in range(n)]
        lower = [f"{_x(i, n):.1f},{_y(below[i], y_max):.1f}" for i in reversed(range(n))]
        tip = f"{name}: {money(sum(values))} in the period"
        body.append(f'<polygon class="series" points="{" ".join(upper + lower)}" '
                    f'fill="{color}" fill-opacity="0.85" data-tip="{escape(tip)}"/>')
        legend.append((name, color))
        below = above
    return (_svg("chart-cost-over-time", "cost over time by service", body)
            + _legend(legend))


def savings_chart(report: Report) -> str:
    """Cumulative actual cost against the fixed-budget counterfactual."""
    period = report.period
    n = period.steps
    times = [period.step_end(i) for i in range(n)]
    actual, fixed = [], []
    a = f = 0.0
    for i in range(n):
        a += report.actual_over_time[i]
        f += report.fixed_budget_over_time[i]
        actual.append(a)
        fixed.append(f)
    y_max = _nice_max(max([*actual, *fixed], default=0.0))
    body = _axes(y_max, times)
    band = ([f"{_x(i, n):.1f},{_y(fixed[i], y_max):.1f}" for i in range(n)]
            + [f"{_x(i, n):.1f},{_y(actual[i], y_max):.1f}" for i in reversed(range(n))])
    total = report.total
    body.append(f'<polygon class="series savings-band" points="{" ".join(band)}" '
                f'fill="#59a14f" fill-opacity="0.25" '
                f'data-tip="{escape("savings: " + money(total.savings))}"/>')
    for name, values, color in (("fixed budget", fixed, "#e15759"),
                                ("actual", actual, "#4e79a7")):
        points = " ".join(f"{_x(i, n):.1f},{_y(values[i], y_max):.1f}" for i in range(n))
        tip = f"{name}: {money(values[-1] if values else 0.0)} cumulative"
        body.append(f'<polyline class="series" points="{points}" fill="none" '
                    f'stroke="{color}" stroke-width="2.5" data-tip="{escape(tip)}"/>')
    return (_svg("chart-savings", "cumulative cost against a fixed budget", body)
            + _legend([("actual cost", "#4e79a7"), ("fixed-budget cost", "#e15759"),
                       ("savings", "#59a14f")]))


def tier_chart(report: Report) -> str:
    """Horizontal bars of cost per difficulty tier."""
    rows = list(report.by_tier)
    height = max(HEIGHT // 2, 40 + 34 * len(rows))
    x0 = 170.0
    w = WIDTH - x0 - 180
    x_max = _nice_max(max((r.figures.cost for r in rows), default=0.0))
    body: list[str] = []
    for k, row in enumerate(rows):
        tier, f = row.group[0], row.figures
        y = 20 + 34 * k
        bar = w * f.cost / x_max if x_max > 0 else 0
        color = PALETTE[k % len(PALETTE)]
        tip = (f"{tier}: {money(f.cost)}, {_count(f.requests)} requests, "
               f"{money(f.cost_per_1k_requests)} per 1k requests")
        body.append(f'<text x="{x0 - 8}" y="{y + 16}" text-anchor="end">'
                    f'{escape(tier[:30])}</text>')
        body.append(f'<rect class="series" x="{x0}" y="{y}" width="{max(bar, 1):.1f}" '
                    f'height="24" fill="{color}" data-tip="{escape(tip)}"/>')
        body.append(f'<text x="{x0 + bar + 6:.1f}" y="{y + 16}">{escape(money(f.cost))} · '
                    f'{escape(money(f.cost_per_1k_requests))}/1k req</text>')
    return (f'<svg id="chart-tiers" class="chart" role="img" aria-label="cost by tier" '
            f'width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}">' + "".join(body) + "</svg>")


def _cards(total: Figures) -> str:
    cards = (
        ("Cost", money(total.cost)),
        ("GPU-hours", f"{total.gpu_hours:,.1f}"),
        ("Idle cost", f"{money(total.idle_cost)} ({_share(total.idle_share)})"),
        ("Savings vs fixed budget",
         f"{money(total.savings)} ({_share(total.savings_share)})"),
        ("Per 1,000 requests", money(total.cost_per_1k_requests)),
        ("Per 1M generated tokens", money(total.cost_per_1m_tokens)),
    )
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{escape(v)}</div><div class="k">{escape(k)}</div>'
        f"</div>" for k, v in cards) + "</div>"


def _cell(value: float | None, text: str) -> str:
    return f'<td data-v="{"" if value is None else f"{value:.6g}"}">{escape(text)}</td>'


def _table(report: Report) -> str:
    dims = report.group_by
    head = "".join(f'<th class="k">{escape(d)}</th>' for d in dims) + "".join(
        f"<th>{escape(h)}</th>" for h in (
            "GPU-h", "Cost", "Idle cost", "Idle %", "Requests", "$/1k req", "Tokens",
            "$/1M tok", "Fixed-budget cost", "Savings"))
    body: list[str] = []
    for row in report.rows:
        f = row.figures
        keys = "".join(f'<td class="k" data-v="{escape(v)}">{escape(v or "(unset)")}</td>'
                       for v in row.group)
        body.append("<tr>" + keys + "".join((
            _cell(f.gpu_hours, f"{f.gpu_hours:,.2f}"), _cell(f.cost, money(f.cost)),
            _cell(f.idle_cost, money(f.idle_cost)), _cell(f.idle_share, _share(f.idle_share)),
            _cell(f.requests, _count(f.requests)),
            _cell(f.cost_per_1k_requests, money(f.cost_per_1k_requests)),
            _cell(f.used_tokens, _count(f.used_tokens)),
            _cell(f.cost_per_1m_tokens, money(f.cost_per_1m_tokens)),
            _cell(f.fixed_budget_cost, money(f.fixed_budget_cost)),
            _cell(f.savings, money(f.savings)))) + "</tr>")
    return (f'<table class="sortable" id="groups"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def render_html(report: Report, *, generated_at: datetime | None = None,
                title: str = "Ponder GPU cost report") -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    period = report.period
    meta = (f"{period.start:%Y-%m-%d %H:%M} → {period.end:%Y-%m-%d %H:%M} UTC · step "
            f"{_duration(period.step_seconds)} · priced from {report.priced_from}")
    if generated_at is not None:
        meta += f" · generated {generated_at:%Y-%m-%d %H:%M:%S} UTC"
    definitions = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in DEFINITIONS)
    warnings = ""
    if report.warnings:
        shown = report.warnings[:MAX_WARNINGS]
        more = len(report.warnings) - len(shown)
        warnings = ('<h2>Warnings</h2><ul class="warn">'
                    + "".join(f"<li>{escape(w)}</li>" for w in shown)
                    + (f"<li>… and {more} more</li>" if more > 0 else "") + "</ul>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><div class=\"meta\">{escape(meta)}</div>"
        f"{_cards(report.total)}"
        "<h2>Cost over time by service</h2>"
        f'<p class="meta">USD per {escape(_duration(period.step_seconds))} step; the '
        f"{TOP_SERVICES} costliest services, the rest together.</p>"
        f"{cost_over_time_chart(report)}"
        "<h2>Savings versus a fixed budget</h2>"
        '<p class="meta">What the same requests would have cost had each been given the top '
        "tier's budget (requests x the top tier's measured tokens per request, at the "
        "service's cost per generated token).</p>"
        f"{savings_chart(report)}"
        "<h2>Cost by difficulty tier</h2>"
        '<p class="meta">A service\'s cost is split over its tiers in proportion to the '
        "tokens each generated.</p>"
        f"{tier_chart(report)}"
        f"<h2>By {escape(', '.join(report.group_by))}</h2>{_table(report)}"
        f"{warnings}<h2>Definitions</h2><dl>{definitions}</dl>"
        f'<div id="tip"></div><script>{_SCRIPT}</script></body></html>\n'
    )
