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

# "All" selects everything without listing it (also what the live test fills in for `All`).
ALL = ".*"
RISK_THRESHOLDS = ("0.3", "0.5", "0.7", "0.9")
DEFAULT_RISK_THRESHOLD = "0.5"


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
    return (
        dashboard_builders.CustomVariable("threshold")
        .label("Risk threshold")
        .description("A generation is risky when its corevital risk score is at least this.")
        .values(",".join(RISK_THRESHOLDS))
        .current(
            dashboard_models.VariableOption(
                selected=True, text=DEFAULT_RISK_THRESHOLD, value=DEFAULT_RISK_THRESHOLD
            )
        )
    )


def trace_id() -> dashboard_builders.TextBoxVariable:
    return (
        dashboard_builders.TextBoxVariable("trace_id")
        .label("Trace ID")
        .description("Paste a trace ID from a table above to show the whole trace.")
        .default_value("")
    )


def standard() -> list[dashboard_builders.QueryVariable | dashboard_builders.DatasourceVariable]:
    """The variables every CoreVital dashboard has, in display order."""
    return [prometheus(), tempo(), job(), model()]
