"""PromQL the way the dashboards and alerting rules write it: rates over a window, quantiles from
summed buckets, guarded ratios, and (on dashboards) every series filtered by the ``job`` and
``model`` variables.

Each function takes a :class:`~corevital_dashboards.registry.Metric`, so a series or label name can
only come from the registry. Dashboards rate over ``$__rate_interval`` (tables over ``$__range``);
alerting rules pass a fixed ``window`` and ``filtered=False`` (a rule has no dashboard variables).
"""

from __future__ import annotations

from collections.abc import Sequence

from .registry import Metric, label, sc

RATE_INTERVAL = "$__rate_interval"
RANGE = "$__range"
MODEL_LABEL = label(sc.GEN_AI_REQUEST_MODEL)
# Prometheus's own labels: `job` (the scrape job, or service.name on the OTLP path) and `le`.
JOB_LABEL = "job"


def matchers(metric: Metric, *extra: str, filtered: bool = True) -> str:
    """``{job=~"$job", gen_ai_request_model=~"$model", …}`` for one of the metric's series.

    ``$job`` and ``$model`` are written bare: Grafana's Prometheus data source then escapes a
    multi-value or "All"-able variable for a regex inside a double-quoted string itself.
    """
    parts = [f'{JOB_LABEL}=~"$job"', f'{metric.label(sc.GEN_AI_REQUEST_MODEL)}=~"$model"'] if filtered else []
    parts += extra
    return "{" + ", ".join(parts) + "}" if parts else ""


def selector(metric: Metric, part: str = "", *extra: str, filtered: bool = True) -> str:
    """A series selector: ``name{matchers}``."""
    return f"{metric.series(part)}{matchers(metric, *extra, filtered=filtered)}"


def rate(
    metric: Metric, part: str = "", *extra: str, window: str = RATE_INTERVAL, filtered: bool = True
) -> str:
    """Per-second rate of one series of the metric over ``window``."""
    return f"rate({selector(metric, part, *extra, filtered=filtered)}[{window}])"


def increase(metric: Metric, part: str = "", *extra: str, window: str = RANGE, filtered: bool = True) -> str:
    """How much a series grew over ``window`` (a summary table's ``$__range``)."""
    return f"increase({selector(metric, part, *extra, filtered=filtered)}[{window}])"


def grouping(metric: Metric, by: Sequence[str], *prometheus_labels: str) -> str:
    """`` by (labels)`` for attributes of the metric (and Prometheus's own labels), or nothing."""
    labels = [*prometheus_labels, *(metric.label(a) for a in by)]
    return f" by ({', '.join(labels)})" if labels else ""


def summed_rate(
    metric: Metric,
    part: str = "",
    by: Sequence[str] = (),
    *extra: str,
    window: str = RATE_INTERVAL,
    filtered: bool = True,
    job: bool = False,
) -> str:
    """``sum by (labels) (rate(...))``: the per-second rate summed over everything but ``by``
    (and ``job`` when ``job`` is true)."""
    group = grouping(metric, by, *((JOB_LABEL,) if job else ()))
    return f"sum{group} ({rate(metric, part, *extra, window=window, filtered=filtered)})"


def summed_increase(metric: Metric, part: str = "", by: Sequence[str] = (), *extra: str) -> str:
    """``sum by (labels) (increase(...[$__range]))``: totals over the dashboard's time range."""
    return f"sum{grouping(metric, by)} ({increase(metric, part, *extra)})"


def quantile(
    q: float, metric: Metric, by: Sequence[str] = (), *, window: str = RATE_INTERVAL, instant: bool = False
) -> str:
    """The ``q`` quantile of a histogram, from its buckets summed by ``le`` (and ``by``).

    ``instant``: over the dashboard's whole range (``increase`` over ``$__range``), for tables.
    """
    labels = ", ".join(["le", *(metric.label(a) for a in by)])
    inner = increase(metric, "bucket") if instant else rate(metric, "bucket", window=window)
    return f"histogram_quantile({q}, sum by ({labels}) ({inner}))"


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


def le_matcher(metric: Metric, bound: float | str) -> str:
    """``le="<bound>"``: a fractional bucket boundary, or a dashboard variable (``"$threshold"``)
    whose values are such boundaries."""
    value = bound if isinstance(bound, str) else metric.bucket_bound(bound)
    return f'le="{value}"'


def share_at_most(
    metric: Metric,
    bound: float | str,
    by: Sequence[str] = (),
    *,
    window: str = RATE_INTERVAL,
    filtered: bool = True,
    job: bool = False,
) -> str:
    """Share of a histogram's observations at or below a bucket boundary (``le``)."""
    below = summed_rate(
        metric, "bucket", by, le_matcher(metric, bound), window=window, filtered=filtered, job=job
    )
    total = summed_rate(metric, "count", by, window=window, filtered=filtered, job=job)
    return guarded_ratio(below, total)


def share_above(
    metric: Metric,
    bound: float | str,
    by: Sequence[str] = (),
    *,
    window: str = RATE_INTERVAL,
    filtered: bool = True,
    job: bool = False,
) -> str:
    """Share of a histogram's observations above a bucket boundary: ``1 - share_at_most``."""
    return f"1 - {share_at_most(metric, bound, by, window=window, filtered=filtered, job=job)}"


def share_between(metric: Metric, low: float, high: float, by: Sequence[str] = ()) -> str:
    """Share of a histogram's observations in (``low``, ``high``]."""
    high_part = summed_rate(metric, "bucket", by, le_matcher(metric, high))
    low_part = summed_rate(metric, "bucket", by, le_matcher(metric, low))
    total = summed_rate(metric, "count", by)
    # Both buckets are summed by the same labels (le summed away), so they subtract one to one.
    return guarded_ratio(f"{high_part} - {low_part}", total)


def mean(metric: Metric, by: Sequence[str] = (), *, instant: bool = False) -> str:
    """Mean observation of a histogram: its sum's rate over its count's (or their increases over
    ``$__range`` with ``instant``)."""
    if instant:
        return guarded_ratio(summed_increase(metric, "sum", by), summed_increase(metric, "count", by))
    return guarded_ratio(summed_rate(metric, "sum", by), summed_rate(metric, "count", by))


def per_sequence(counter: Metric, sequences: Metric, by: Sequence[str] = (), *extra: str) -> str:
    """A counter's rate per returned sequence (``sequences`` counts one observation per returned
    sequence: the risk-score histogram), split by ``by`` attributes of the counter."""
    numerator = summed_rate(counter, "", by, *extra)
    denominator = summed_rate(sequences, "count")
    return guarded_ratio(numerator, denominator, "on() group_left()" if by else "")


def label_values(metric: Metric, label_name: str, *extra: str) -> str:
    """A Grafana ``label_values`` variable query over one of the metric's series."""
    selector_text = "{" + ", ".join(extra) + "}" if extra else ""
    part = "count" if metric.instrument == "histogram" else ""
    return f"label_values({metric.series(part)}{selector_text}, {label_name})"
