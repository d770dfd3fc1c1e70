"""Panel builders with the house rules baked in.

Every panel gets a description, a unit, thresholds, a "no traffic" display for empty results and
NaN, an explicit id and a size on Grafana's 24-column grid (the dashboard builder places panels left
to right). Datasources are always the dashboard's ``${prometheus}`` / ``${tempo}`` variables, never a
uid, so the same JSON works when provisioned and when imported.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import heatmap as heatmap_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.builders import stat as stat_builders
from grafana_foundation_sdk.builders import tempo as tempo_builders
from grafana_foundation_sdk.builders import timeseries as timeseries_builders
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prometheus_models
from grafana_foundation_sdk.models import tempo as tempo_models

PROMETHEUS = dashboard_models.DataSourceRef(type_val="prometheus", uid="${prometheus}")
TEMPO = dashboard_models.DataSourceRef(type_val="tempo", uid="${tempo}")
NO_TRAFFIC = "no traffic"
GRID_COLUMNS = 24

# Grafana units (https://grafana.com/docs/grafana/latest/panels-visualizations/configure-standard-options/)
SECONDS = "s"
SHARE = "percentunit"
PLAIN = "none"
TOKENS_PER_SECOND = "suffix: tokens/s"
CALLS_PER_SECOND = "suffix: calls/s"
SEQUENCES_PER_SECOND = "suffix: sequences/s"
ERRORS_PER_SECOND = "suffix: errors/s"
STEPS_PER_SECOND = "suffix: steps/s"
PER_SEQUENCE = "suffix: per sequence"
BITS = "suffix: bit"

# Said on every panel that shows exemplars (the Collector's tail sampling drops most healthy traces
# after the metrics recorded their exemplars).
EXEMPLAR_NOTE = (
    " Exemplar dots (OTLP path) open their trace in Tempo. Behind the bundled Collector only risky, "
    "failed and erroring generations and 10 % of the rest keep their trace, so a dot of a healthy "
    'generation often opens "trace not found".'
)

Panel = TypeVar("Panel", bound=Any)


@dataclass(frozen=True)
class Step:
    """A threshold step: from ``value`` upwards the panel turns ``color`` (``None`` = the base)."""

    value: float | None
    color: str


# Reusable threshold ladders.
NEUTRAL = (Step(None, "green"),)


def ladder(warn: float, critical: float) -> tuple[Step, ...]:
    """Green below ``warn``, orange from ``warn``, red from ``critical``."""
    return (Step(None, "green"), Step(warn, "orange"), Step(critical, "red"))


class PanelIds:
    """Gives every panel and row of one dashboard a unique id, in building order."""

    def __init__(self) -> None:
        self._counter: Iterator[int] = itertools.count(1)

    def next(self) -> int:
        return next(self._counter)


def _thresholds(steps: Sequence[Step]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=s.value, color=s.color) for s in steps])
    )


def _no_traffic() -> list[dashboard_models.ValueMapping]:
    return [
        dashboard_models.SpecialValueMap(
            options=dashboard_models.DashboardSpecialValueMapOptions(
                match=dashboard_models.SpecialValueMatch.NULL_AND_NAN,
                result=dashboard_models.ValueMappingResult(text=NO_TRAFFIC),
            )
        )
    ]


def base_panel(
    panel: Panel,
    ids: PanelIds,
    title: str,
    description: str,
    unit: str,
    steps: Sequence[Step],
    width: int,
    height: int,
) -> Panel:
    if not 0 < width <= GRID_COLUMNS:
        raise ValueError(f"panel {title!r}: width {width} does not fit a {GRID_COLUMNS}-column grid")
    return (
        panel.id(ids.next())
        .title(title)
        .description(description)
        .unit(unit)
        .thresholds(_thresholds(steps))
        .mappings(_no_traffic())
        .no_value(NO_TRAFFIC)
        .span(width)
        .height(height)
    )


@dataclass(frozen=True)
class Query:
    """One PromQL target: the expression, its legend, whether exemplars are worth asking for, and
    whether it is an instant query returning a table (a summary table's column)."""

    expr: str
    legend: str = ""
    exemplar: bool = False
    instant: bool = False


def prometheus_targets(
    queries: Sequence[Query], *, heatmap: bool = False
) -> list[prometheus_builders.Dataquery]:
    targets = []
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        target = (
            prometheus_builders.Dataquery()
            .ref_id(ref)
            .datasource(PROMETHEUS)
            .expr(query.expr)
            .legend_format(query.legend or "__auto")
            .editor_mode(prometheus_models.QueryEditorMode.CODE)
        )
        if query.instant:
            target = target.instant().format(prometheus_models.PromQueryFormat.TABLE)
        else:
            target = target.range()
        if query.exemplar:
            # The Prometheus exporter path has no exemplars; OTLP into Prometheus with exemplar
            # storage has them, and Grafana then links each one to its trace in Tempo.
            target = target.exemplar(True)
        if heatmap:
            target = target.format(prometheus_models.PromQueryFormat.HEATMAP)
        targets.append(target)
    if len(targets) != len(queries):
        raise ValueError("at most 8 queries per panel")
    return targets


def timeseries(
    ids: PanelIds,
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    steps: Sequence[Step] = NEUTRAL,
    width: int = 12,
    height: int = 8,
    min_value: float | None = 0,
    max_value: float | None = None,
    stacked: bool = False,
    bars: bool = False,
    no_value: str = NO_TRAFFIC,
) -> timeseries_builders.Panel:
    """A time series of PromQL queries, legend as a table with last and max values.

    ``no_value`` is what an empty result means: "no traffic" unless the series only exist once
    something happened (a flag raised, a call failed).
    """
    if any(q.exemplar for q in queries):
        description += EXEMPLAR_NOTE
    panel = (
        base_panel(timeseries_builders.Panel(), ids, title, description, unit, steps, width, height)
        .datasource(PROMETHEUS)
        .no_value(no_value)
    )
    for target in prometheus_targets(queries):
        panel = panel.with_target(target)
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    if len(steps) > 1:
        panel = panel.thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    return panel.legend(
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    ).tooltip(
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )


def stat(
    ids: PanelIds,
    title: str,
    description: str,
    query: Query,
    *,
    unit: str,
    steps: Sequence[Step] = NEUTRAL,
    width: int = 4,
    height: int = 4,
    decimals: int | None = None,
) -> stat_builders.Panel:
    """One number (the last value of an instant-style PromQL query) coloured by its thresholds."""
    panel = (
        base_panel(stat_builders.Panel(), ids, title, description, unit, steps, width, height)
        .datasource(PROMETHEUS)
        .with_target(prometheus_targets([query])[0])
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return panel.decimals(decimals) if decimals is not None else panel


def heatmap(
    ids: PanelIds,
    title: str,
    description: str,
    query: Query,
    *,
    unit: str,
    cell_unit: str,
    steps: Sequence[Step] = NEUTRAL,
    width: int = 12,
    height: int = 8,
) -> heatmap_builders.Panel:
    """A heatmap of a histogram's bucket rates (``format: heatmap``: Grafana de-accumulates ``le``);
    ``cell_unit`` is what one cell counts per second."""
    if query.exemplar:
        description += EXEMPLAR_NOTE
    return (
        base_panel(heatmap_builders.Panel(), ids, title, description, cell_unit, steps, width, height)
        .datasource(PROMETHEUS)
        .with_target(prometheus_targets([query], heatmap=True)[0])
        .calculate(False)
        .y_axis(heatmap_builders.YAxisConfig().unit(unit).min(0))
        .rows_frame(heatmap_builders.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
        .color(
            heatmap_builders.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_models.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
        )
        .exemplars_color("rgba(255,0,255,0.7)")
    )


def tempo_target(query: str, *, limit: int, metrics: bool = False) -> tempo_builders.Dataquery:
    target = (
        tempo_builders.Dataquery()
        .ref_id("A")
        .datasource(TEMPO)
        .query_type(str(tempo_models.TempoQueryType.TRACEQL))
        .query(query)
        .limit(limit)
    )
    if metrics:
        return target.metrics_query_type(tempo_models.MetricsQueryType.RANGE)
    return target.table_type(tempo_models.SearchTableType.SPANS).spss(1)


def traceql_metrics(
    ids: PanelIds,
    title: str,
    description: str,
    traceql: str,
    *,
    unit: str,
    steps: Sequence[Step] = NEUTRAL,
    width: int = 12,
    height: int = 8,
) -> timeseries_builders.Panel:
    """A time series computed by Tempo from spans (a TraceQL metrics query)."""
    return (
        base_panel(timeseries_builders.Panel(), ids, title, description, unit, steps, width, height)
        .datasource(TEMPO)
        .with_target(tempo_target(traceql, limit=20, metrics=True))
        .min(0)
    )


def trace_view(ids: PanelIds, title: str, description: str, trace_id: str) -> dashboard_builders.Panel:
    """Grafana's trace view of one trace (by id, from a dashboard variable)."""
    return (
        base_panel(
            dashboard_builders.Panel().type("traces"),
            ids,
            title,
            description,
            PLAIN,
            NEUTRAL,
            GRID_COLUMNS,
            16,
        )
        .datasource(TEMPO)
        .with_target(
            tempo_builders.Dataquery()
            .ref_id("A")
            .datasource(TEMPO)
            .query_type(str(tempo_models.TempoQueryType.TRACEQL))
            .query(trace_id)
        )
    )


def row(ids: PanelIds, title: str) -> dashboard_builders.Row:
    """A row header spanning the grid."""
    return dashboard_builders.Row(title).id(ids.next())
