"""PromQL the way the dashboards write it: rates over ``$__rate_interval``, quantiles from summed
buckets, guarded ratios, and every series filtered by the ``job`` and ``model`` variables.

Each function takes a :class:`~corevital_dashboards.registry.Metric`, so a series or label name can
only come from the registry.
"""

from __future__ import annotations

from collections.abc import Sequence

from .registry import Metric, label, sc

RATE_INTERVAL = "$__rate_interval"
MODEL_LABEL = label(sc.GEN_AI_REQUEST_MODEL)


def matchers(metric: Metric, *extra: str) -> str:
    """``{job=~"$job", gen_ai_request_model=~"$model", …}`` for one of the metric's series."""
    parts = ['job=~"$job"', f'{metric.label(sc.GEN_AI_REQUEST_MODEL)}=~"$model"', *extra]
    return "{" + ", ".join(parts) + "}"


def rate(metric: Metric, part: str = "", *extra: str) -> str:
    """Per-second rate of one series of the metric over ``$__rate_interval``."""
    return f"rate({metric.series(part)}{matchers(metric, *extra)}[{RATE_INTERVAL}])"


def summed_rate(metric: Metric, part: str = "", by: Sequence[str] = (), *extra: str) -> str:
    """``sum by (labels) (rate(...))``: the per-second rate summed over everything but ``by``."""
    grouping = f" by ({', '.join(metric.label(a) for a in by)})" if by else ""
    return f"sum{grouping} ({rate(metric, part, *extra)})"


def quantile(q: float, metric: Metric, by: Sequence[str] = ()) -> str:
    """The ``q`` quantile of a histogram, from its buckets summed by ``le`` (and ``by``)."""
    labels = ", ".join(["le", *(metric.label(a) for a in by)])
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(metric, 'bucket')}))"


def buckets(metric: Metric) -> str:
    """Bucket rates summed by ``le``: a heatmap of the histogram."""
    return f"sum by (le) ({rate(metric, 'bucket')})"


def guarded_ratio(numerator: str, denominator: str, matching: str = "") -> str:
    """``numerator / (denominator > 0)``: no result, rather than NaN or ±Inf, when nothing ran.

    ``matching`` is a vector-matching clause such as ``on() group_left()`` (a per-label numerator
    over one total).
    """
    operator = f"/ {matching} " if matching else "/ "
    return f"({numerator}) {operator}({denominator} > 0)"


def or_zero(expr: str, traffic: str) -> str:
    """``expr``, or 0 while there is ``traffic`` but ``expr`` has no series (nothing raised yet).

    With no traffic at all the result stays empty, which the panels show as "no traffic".
    """
    return f"({expr}) or (0 * {traffic})"


def share_above(metric: Metric, bound: float, by: Sequence[str] = ()) -> str:
    """Share of a histogram's observations above one of its bucket boundaries."""
    le = f'le="{metric.bucket_bound(bound)}"'
    below = summed_rate(metric, "bucket", by, le)
    total = summed_rate(metric, "count", by)
    return f"1 - {guarded_ratio(below, total)}"


def mean(metric: Metric, by: Sequence[str] = ()) -> str:
    """Mean observation of a histogram: rate of its sum over rate of its count."""
    return guarded_ratio(summed_rate(metric, "sum", by), summed_rate(metric, "count", by))


def label_values(metric: Metric, label_name: str, *extra: str) -> str:
    """A Grafana ``label_values`` variable query over one of the metric's series."""
    selector = "{" + ", ".join(extra) + "}" if extra else ""
    part = "count" if metric.instrument == "histogram" else ""
    return f"label_values({metric.series(part)}{selector}, {label_name})"
