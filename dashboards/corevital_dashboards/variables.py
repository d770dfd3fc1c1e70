"""Dashboard variables shared by the three dashboards.

``prometheus`` and ``tempo`` pick the datasources (no uid is ever written into a panel); ``job`` and
``model`` are chained: the model list only shows models that the selected jobs reported. ``job`` is
the scrape job on the Prometheus-exporter path and ``service.name`` when metrics arrive over OTLP.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard as dashboard_models

from . import promql
from .panels import PROMETHEUS
from .registry import metric, sc

# "All" selects everything without listing it: Grafana inserts this custom all value unformatted.
ALL = ".*"
# Risk thresholds are bucket boundaries of the risk-score histogram, so the PromQL panels can read
# the share above one from its bucket (le="$threshold") and Tempo can compare spans with it.
RISK_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
DEFAULT_RISK_THRESHOLD = 0.5


def prometheus() -> dashboard_builders.DatasourceVariable:
    return dashboard_builders.DatasourceVariable("prometheus").label("Prometheus").type("prometheus")


def tempo() -> dashboard_builders.DatasourceVariable:
    return dashboard_builders.DatasourceVariable("tempo").label("Tempo").type("tempo")


def _query_variable(name: str, label: str, query: str, description: str) -> dashboard_builders.QueryVariable:
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROMETHEUS)
        .query(query)
        .definition(query)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
    )


def job() -> dashboard_builders.QueryVariable:
    duration = metric(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION)
    return _query_variable(
        "job",
        "Job",
        promql.label_values(duration, "job"),
        "Scrape job, or service.name when metrics arrive over OTLP.",
    )


def model() -> dashboard_builders.QueryVariable:
    duration = metric(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION)
    return _query_variable(
        "model",
        "Model",
        promql.label_values(duration, duration.label(sc.GEN_AI_REQUEST_MODEL), 'job=~"$job"'),
        "The models (gen_ai.request.model) that the selected jobs reported.",
    )


def risk_threshold() -> dashboard_builders.CustomVariable:
    """The risk threshold: a bucket boundary of ``corevital.risk.score`` (``le`` in PromQL, a number
    in TraceQL)."""
    risk = metric(sc.METRIC_COREVITAL_RISK_SCORE)
    values = [risk.bucket_bound(t) for t in RISK_THRESHOLDS]
    default = risk.bucket_bound(DEFAULT_RISK_THRESHOLD)
    return (
        dashboard_builders.CustomVariable("threshold")
        .label("Risk threshold")
        .description(
            "A generation is risky above this risk score (the metrics read the histogram bucket of this "
            "bound; the Tempo tables keep scores at least this)."
        )
        .values(",".join(values))
        .current(dashboard_models.VariableOption(selected=True, text=default, value=default))
    )


def trace_id() -> dashboard_builders.TextBoxVariable:
    return (
        dashboard_builders.TextBoxVariable("trace_id")
        .label("Trace ID")
        .description("Filled by a click on a generation in a table (or paste a trace ID): the trace below.")
        .default_value("")
    )


def standard() -> list[dashboard_builders.QueryVariable | dashboard_builders.DatasourceVariable]:
    """The variables every CoreVital dashboard has, in display order."""
    return [prometheus(), tempo(), job(), model()]
