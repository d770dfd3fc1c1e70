"""Table panels: generation spans found in Tempo (each row opens its trace in the trace view), and a
per-model summary of instant PromQL queries over the dashboard's time range (a click on a model
filters the dashboard to it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import table as table_builders
from grafana_foundation_sdk.models import dashboard as dashboard_models

from . import links
from .panels import (
    NEUTRAL,
    PLAIN,
    PROMETHEUS,
    TEMPO,
    PanelIds,
    Query,
    Step,
    base_panel,
    prometheus_targets,
    tempo_target,
)

# The span-name column of Tempo's spans table: where the "open this trace" link goes (the Span ID
# column keeps Grafana's own link to the trace in Explore).
TEMPO_SPAN_NAME_FIELD = "name"


def _properties(**values: Any) -> list[dashboard_models.DynamicConfigValue]:
    return [dashboard_models.DynamicConfigValue(id_val=key, value=value) for key, value in values.items()]


def trace_table(
    ids: PanelIds,
    title: str,
    description: str,
    traceql: str,
    *,
    traces_uid: str,
    width: int = 24,
    height: int = 8,
    limit: int = 20,
    steps: Sequence[Step] = NEUTRAL,
) -> table_builders.Panel:
    """A table of the generation spans a TraceQL search finds. The span name opens the trace in the
    traces dashboard's trace panel; the Span ID opens it in Explore."""
    return (
        base_panel(table_builders.Panel(), ids, title, description, PLAIN, steps, width, height)
        .datasource(TEMPO)
        .with_target(tempo_target(traceql, limit=limit))
        .filterable(True)
        .override_by_name(
            TEMPO_SPAN_NAME_FIELD, _properties(links=[links.open_trace(traces_uid, links.CARRIED)])
        )
    )


@dataclass(frozen=True)
class Column:
    """One column of a summary table: an instant PromQL query over ``$__range``, its title and unit."""

    title: str
    expr: str
    unit: str
    decimals: int | None = None


def summary_table(
    ids: PanelIds,
    title: str,
    description: str,
    key_label: str,
    key_title: str,
    columns: Sequence[Column],
    *,
    dashboard_uid: str,
    width: int = 24,
    height: int = 7,
) -> table_builders.Panel:
    """One row per value of ``key_label`` (the model), one column per instant query; the key cell
    filters the dashboard to its value."""
    queries = [Query(c.expr, instant=True) for c in columns]
    panel = base_panel(
        table_builders.Panel(), ids, title, description, PLAIN, NEUTRAL, width, height
    ).datasource(PROMETHEUS)
    for target in prometheus_targets(queries):
        panel = panel.with_target(target)
    refs = [target.build().ref_id for target in prometheus_targets(queries)]
    renames = {key_label: key_title} | {
        f"Value #{ref}": c.title for ref, c in zip(refs, columns, strict=True)
    }
    panel = panel.with_transformation(dashboard_models.DataTransformerConfig(id_val="merge", options={}))
    panel = panel.with_transformation(
        dashboard_models.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True},
                "renameByName": renames,
                "indexByName": {name: index for index, name in enumerate(renames)},
            },
        )
    )
    panel = panel.override_by_name(
        key_title, _properties(links=[links.filter_model(dashboard_uid, links.CARRIED)])
    )
    for column in columns:
        properties: dict[str, Any] = {"unit": column.unit}
        if column.decimals is not None:
            properties["decimals"] = column.decimals
        panel = panel.override_by_name(column.title, _properties(**properties))
    return panel.filterable(True)
