"""CoreVital — generation performance: latency, throughput and errors of generate() (the GenAI
client metrics), and what CoreVital's own monitoring costs per call and how often it fails."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from . import alerts, panels, promql
from .base import UID_PERFORMANCE, new_dashboard
from .panels import (
    CALLS_PER_SECOND,
    ERRORS_PER_SECOND,
    SECONDS,
    SHARE,
    TOKENS_PER_SECOND,
    PanelIds,
    Query,
    ladder,
)
from .registry import metric, sc

QUANTILES = (0.5, 0.95, 0.99)
# CoreVital's overhead as a share of the call: under 5% is the design target, above 20% hurts.
OVERHEAD_STEPS = ladder(0.05, alerts.OVERHEAD_SHARE)
ERROR_STEPS = ladder(0.01, 0.05)
TITLE_CALLS_BY_MODEL = "generate() calls per second by model"
TITLE_OVERHEAD_SHARE = "CoreVital overhead as a share of generate()"
TITLE_INTERNAL_ERRORS = "CoreVital internal errors by type"


def build() -> dashboard_builders.Dashboard:
    """The generation-performance dashboard."""
    duration = metric(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION)
    tokens = metric(sc.METRIC_GEN_AI_CLIENT_TOKEN_USAGE)
    first_token = metric(sc.METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    per_token = metric(sc.METRIC_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
    overhead = metric(sc.METRIC_COREVITAL_OVERHEAD_DURATION)
    internal_errors = metric(sc.METRIC_COREVITAL_INTERNAL_ERRORS)
    model = sc.GEN_AI_REQUEST_MODEL
    by_model = f"{{{{{promql.MODEL_LABEL}}}}}"
    error_label = duration.label(sc.ERROR_TYPE)
    failed = f'{error_label}!=""'
    overhead_share = promql.guarded_ratio(
        promql.summed_rate(overhead, "sum", [model]), promql.summed_rate(duration, "sum", [model])
    )
    error_share = promql.guarded_ratio(
        promql.summed_rate(duration, "count", [sc.ERROR_TYPE], failed),
        promql.summed_rate(duration, "count"),
        matching="on() group_left()",
    )
    calls_per_second = promql.summed_rate(duration, "count")
    ids = PanelIds()
    board = new_dashboard(
        UID_PERFORMANCE,
        "generation performance",
        "Latency, throughput and errors of generate() from the OpenTelemetry GenAI metrics, and "
        "CoreVital's own cost and failures per call.",
    )

    board = board.with_row(panels.row(ids, "Overview"))
    overview = (
        panels.stat(
            ids,
            "Operation duration p95",
            "95 in 100 generate() calls finished within this time.",
            Query(promql.quantile(0.95, duration)),
            unit=SECONDS,
        ),
        panels.stat(
            ids,
            "Output tokens per second",
            "Tokens generated per second, all selected models.",
            Query(
                promql.summed_rate(
                    tokens, "sum", (), f'{tokens.label(sc.GEN_AI_TOKEN_TYPE)}="{sc.GEN_AI_TOKEN_TYPE_OUTPUT}"'
                )
            ),
            unit=TOKENS_PER_SECOND,
        ),
        panels.stat(
            ids,
            "Failed calls",
            "Share of generate() calls that raised (error.type set).",
            Query(
                promql.guarded_ratio(
                    promql.or_zero(promql.summed_rate(duration, "count", (), failed), calls_per_second),
                    calls_per_second,
                )
            ),
            unit=SHARE,
            steps=ERROR_STEPS,
        ),
        panels.stat(
            ids,
            "CoreVital overhead",
            "Time spent in CoreVital (hooks, stopping criterion, read-out) as a share of the time spent "
            "in generate(), all selected models.",
            Query(
                promql.guarded_ratio(promql.summed_rate(overhead, "sum"), promql.summed_rate(duration, "sum"))
            ),
            unit=SHARE,
            steps=OVERHEAD_STEPS,
        ),
        panels.stat(
            ids,
            "CoreVital internal errors per second",
            "Failures of CoreVital's own code per second (the users' calls are unaffected; their read-out "
            "is missing or partial). 0 is the healthy state.",
            Query(promql.or_zero(promql.summed_rate(internal_errors), calls_per_second)),
            unit=ERRORS_PER_SECOND,
            steps=ladder(1e-9, 0.01),
        ),
        panels.stat(
            ids,
            "Time to first token p95",
            "95 in 100 calls had their first token (the prefill) within this time.",
            Query(promql.quantile(0.95, first_token)),
            unit=SECONDS,
        ),
    )
    for panel in overview:
        board = board.with_panel(panel)

    board = board.with_row(panels.row(ids, "Latency"))
    latency_panels = (
        ("Operation duration", "Wall-clock time of the whole generate() call, by model.", duration),
        ("Time to first token", "From the call's start to the end of the prefill forward.", first_token),
        (
            "Time per output token",
            "Decode time per generated token after the first (longest returned sequence).",
            per_token,
        ),
    )
    for title, description, histogram in latency_panels:
        board = board.with_panel(
            panels.timeseries(
                ids,
                f"{title} p50 / p95 / p99 and mean",
                f"{description} Quantiles from the histogram buckets, and the exact mean (sum over count).",
                [
                    *(
                        Query(
                            promql.quantile(q, histogram, [model]),
                            f"p{round(q * 100)} {by_model}",
                            exemplar=True,
                        )
                        for q in QUANTILES
                    ),
                    Query(promql.mean(histogram, [model]), f"mean {by_model}"),
                ],
                unit=SECONDS,
                width=8,
            )
        )
    for title, description, histogram in latency_panels[1:]:
        board = board.with_panel(
            panels.heatmap(
                ids,
                f"{title} distribution",
                f"Calls per second in each {title.lower()} bucket. {description}",
                Query(promql.buckets(histogram), "{{le}}", exemplar=True),
                unit=SECONDS,
                cell_unit=CALLS_PER_SECOND,
            )
        )

    board = board.with_row(panels.row(ids, "Throughput and errors"))
    board = board.with_panel(
        panels.timeseries(
            ids,
            "Input and output tokens per second",
            "Prompt (input) and generated (output) tokens per second, by model, counted from the tensors.",
            [
                Query(
                    promql.summed_rate(tokens, "sum", [model, sc.GEN_AI_TOKEN_TYPE]),
                    f"{{{{{tokens.label(sc.GEN_AI_TOKEN_TYPE)}}}}} {by_model}",
                )
            ],
            unit=TOKENS_PER_SECOND,
            width=8,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            TITLE_CALLS_BY_MODEL,
            "generate() calls finished per second, by model. The "
            f"{alerts.ALERT_PREFIX}NoGenerations alert fires when a model that had calls in the hour "
            f"before stops for {alerts.SILENCE_QUIET}.",
            [Query(promql.summed_rate(duration, "count", [model]), by_model)],
            unit=CALLS_PER_SECOND,
            width=8,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            "Error rate by error.type",
            "Share of all generate() calls that raised, by exception type (error.type).",
            [Query(error_share, f"{{{{{error_label}}}}}")],
            unit=SHARE,
            steps=ERROR_STEPS,
            width=8,
            max_value=1,
            no_value="no errors",
        )
    )

    board = board.with_row(panels.row(ids, "What CoreVital costs"))
    board = board.with_panel(
        panels.timeseries(
            ids,
            "CoreVital overhead per call p50 / p99 and mean",
            "Seconds CoreVital spent on one generate() call (forward hooks, stopping criterion, read-out "
            "and telemetry), by model and capture level.",
            [
                *(
                    Query(
                        promql.quantile(q, overhead, [model, sc.COREVITAL_CAPTURE_LEVEL]),
                        f"p{round(q * 100)} {by_model} {{{{{overhead.label(sc.COREVITAL_CAPTURE_LEVEL)}}}}}",
                        exemplar=True,
                    )
                    for q in (0.5, 0.99)
                ),
                Query(
                    promql.mean(overhead, [model, sc.COREVITAL_CAPTURE_LEVEL]),
                    f"mean {by_model} {{{{{overhead.label(sc.COREVITAL_CAPTURE_LEVEL)}}}}}",
                ),
            ],
            unit=SECONDS,
            width=8,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            TITLE_OVERHEAD_SHARE,
            "Seconds in CoreVital per second in generate(), by model: what the monitoring costs in "
            f"production. The {alerts.ALERT_PREFIX}OverheadHigh alert fires above "
            f"{alerts.OVERHEAD_SHARE:.0%} for 15 minutes.",
            [Query(overhead_share, by_model)],
            unit=SHARE,
            steps=OVERHEAD_STEPS,
            width=8,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            TITLE_INTERNAL_ERRORS,
            "Failures of CoreVital's own code per second, by model and exception type "
            f"(corevital.error.type). The {alerts.ALERT_PREFIX}InternalErrors alert fires on any.",
            [
                Query(
                    promql.summed_rate(internal_errors, "", [model, sc.COREVITAL_ERROR_TYPE]),
                    f"{{{{{internal_errors.label(sc.COREVITAL_ERROR_TYPE)}}}}} {by_model}",
                )
            ],
            unit=ERRORS_PER_SECOND,
            bars=True,
            width=8,
            no_value="no errors",
        )
    )
    return board
