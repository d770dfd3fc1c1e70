"""CoreVital — traces: the generations behind the numbers, searched in Tempo with TraceQL (risky
ones, one table per health flag, those CoreVital stopped, CoreVital's own errors), a TraceQL metrics
rate of risky generations, and the trace view of one selected trace."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from . import panels, tables, traceql, variables
from .base import UID_TRACES, new_dashboard
from .health import RISK_STEPS
from .panels import CALLS_PER_SECOND, PanelIds
from .registry import health_flags


def build() -> dashboard_builders.Dashboard:
    """The traces dashboard."""
    ids = PanelIds()
    board = new_dashboard(
        UID_TRACES,
        "traces",
        "Generation spans in Tempo: risky generations, generations by health flag, generations "
        "CoreVital stopped, CoreVital's internal errors, and the trace of the generation clicked in a "
        "table. Needs Tempo with the vParquet4 block format or later (the default since Tempo 2.6) for "
        "array attributes, and the local-blocks metrics-generator processor for the TraceQL metrics "
        "panel. The Job variable matches the spans' service.name (what Prometheus's OTLP receiver makes "
        "the job).",
        [variables.risk_threshold(), variables.trace_id()],
    )

    board = board.with_row(panels.row(ids, "Risky generations"))
    board = board.with_panel(
        tables.trace_table(
            ids,
            "Risky generations",
            "Generation spans whose risk score is at least $threshold, with the model, band, flags and "
            "narrative. Click a span name to show its trace below; the Span ID opens it in Explore.",
            traceql.risky_generations(),
            traces_uid=UID_TRACES,
            width=16,
            steps=RISK_STEPS,
        )
    )
    board = board.with_panel(
        panels.traceql_metrics(
            ids,
            "Risky generations per second by model (TraceQL metrics)",
            "Computed by Tempo from the stored spans, so it also covers models that export no metrics.",
            traceql.risky_rate_by_model(),
            unit=CALLS_PER_SECOND,
            width=8,
        )
    )

    board = board.with_row(panels.row(ids, "Generations by health flag"))
    for flag in health_flags():
        counted = "" if flag.type == "boolean" else " (at least one step)"
        board = board.with_panel(
            tables.trace_table(
                ids,
                f"Flag: {flag.name}",
                f"Generation spans that raised the {flag.name} health flag{counted}.",
                traceql.flagged_generations(flag),
                traces_uid=UID_TRACES,
                width=12,
                height=7,
                limit=10,
            )
        )

    board = board.with_row(panels.row(ids, "Interventions and internal errors"))
    board = board.with_panel(
        tables.trace_table(
            ids,
            "Generations CoreVital stopped",
            "Generations with corevital.stopped among their finish reasons (stop_on fired), with the "
            "signal and step that stopped them.",
            traceql.stopped_generations(),
            traces_uid=UID_TRACES,
            width=12,
        )
    )
    board = board.with_panel(
        tables.trace_table(
            ids,
            "CoreVital internal errors",
            "Generations during which CoreVital's own code failed. The user's call was unaffected; the "
            "health read-out of that call is missing or partial. Report these.",
            traceql.internal_errors(),
            traces_uid=UID_TRACES,
            width=12,
        )
    )

    board = board.with_row(panels.row(ids, "Selected trace"))
    board = board.with_panel(
        panels.trace_view(
            ids,
            "Trace $trace_id",
            "The whole trace of the generation clicked in a table above (or of a pasted Trace ID): the "
            "generation span with its corevital attributes and the events at the steps where a flag, an "
            "early warning or an intervention happened.",
            "${trace_id}",
        )
    )
    return board
