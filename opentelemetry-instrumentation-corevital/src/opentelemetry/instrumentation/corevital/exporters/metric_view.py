"""CoreVital's and the GenAI metrics as a small plain-text table.

Histograms show their number of samples, mean, min and max; counters their total. One row per
metric and attribute set; an attribute that several metrics carry with one value (the model, the
operation) is printed once above the table. Metrics of other instrumentations are left out. Control
characters in an attribute value are printed escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from .. import semconv as sc
from .span_view import printable

#: Every metric name CoreVital records (the generated ``METRIC_*`` constants).
METRIC_NAMES = frozenset(value for name, value in vars(sc).items() if name.startswith("METRIC_"))


def metric_rows(data: MetricsData | None) -> list[dict[str, Any]]:
    """One row per (metric, attribute set) of CoreVital's metrics, in the order they were recorded."""
    rows: list[dict[str, Any]] = []
    if data is None:
        return rows
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name not in METRIC_NAMES:
                    continue
                for point in metric.data.data_points:
                    row: dict[str, Any] = {
                        "metric": metric.name,
                        "unit": metric.unit or "",
                        "attributes": dict(point.attributes or {}),
                    }
                    if isinstance(point, HistogramDataPoint):
                        count = int(point.count)
                        row.update(count=count, mean=point.sum / count if count else None)
                        row.update(min=point.min, max=point.max)
                    elif isinstance(point, NumberDataPoint):  # a counter's total or a gauge's value
                        row["total"] = point.value
                    else:  # exponential histograms: CoreVital records none
                        continue
                    rows.append(row)
    return rows


def format_metrics(data: MetricsData | None) -> str:
    """The table (ends with a newline), or ``""`` when no CoreVital metric has a data point."""
    rows = metric_rows(data)
    if not rows:
        return ""
    shared = _shared_attributes(rows)
    lines = ["== CoreVital metrics (since the process started) =="]
    if shared:
        lines.append(printable("for " + ", ".join(f"{key}={value}" for key, value in shared.items())))
    table: list[tuple[str, ...]] = [("metric", "attributes", "n", "mean", "min", "max", "unit")]
    for row in rows:
        labels = printable(", ".join(str(v) for k, v in row["attributes"].items() if k not in shared))
        cells: tuple[str, ...] = (_number(row.get("total")), "", "", "")
        if "count" in row:
            cells = (str(row["count"]), _number(row["mean"]), _number(row["min"]), _number(row["max"]))
        table.append((row["metric"], labels, *cells, row["unit"]))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for cells in table:
        text = "  ".join(
            cell.rjust(widths[i]) if 2 <= i <= 5 else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        )
        lines.append(text.rstrip())
    lines.append("(n: the samples of a histogram, the total of a counter)")
    return "\n".join(lines) + "\n"


def _shared_attributes(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Attributes that more than one metric carries, always with the same value."""
    values: dict[str, set[str]] = {}
    metrics: dict[str, set[str]] = {}
    first: dict[str, Any] = {}
    for row in rows:
        for key, value in row["attributes"].items():
            values.setdefault(key, set()).add(repr(value))
            metrics.setdefault(key, set()).add(row["metric"])
            first.setdefault(key, value)
    return {key: first[key] for key in first if len(values[key]) == 1 and len(metrics[key]) > 1}


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9):
        return str(int(value))
    magnitude = abs(value)
    return f"{value:.3g}" if magnitude < 1000 else f"{value:,.0f}"
