"""``ponder cost report``: GPU cost, idle cost and test-time-compute savings per service.

Layers, each importing only the ones above it::

    model   pure: period, inputs, figures, errors (no I/O, no clock)
    query   Prometheus range queries → ``model.ReportInputs``
    focus   ``model.Report`` → FOCUS 1.2 CSV rows
    html    ``model.Report`` → a self-contained HTML page with SVG charts
    cli     arguments → query → model → one of the formats
"""

from .model import (
    CostReportError,
    EmptyPeriodError,
    MissingPriceError,
    PrometheusQueryError,
    Report,
    ReportInputError,
    ReportInputs,
    compute_report,
)

__all__ = [
    "CostReportError",
    "EmptyPeriodError",
    "MissingPriceError",
    "PrometheusQueryError",
    "Report",
    "ReportInputError",
    "ReportInputs",
    "compute_report",
]
