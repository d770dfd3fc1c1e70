"""CoreVital — generation performance: latency, throughput and errors of generate() (the GenAI
client metrics), and what CoreVital's own monitoring costs per call."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from . import panels, promql
from .base import UID_PERFORMANCE, new_dashboard
from .panels import PER_SECOND, SECONDS, SHARE, TOKENS_PER_SECOND, PanelIds, Query, ladder
from .registry import metric, sc

QUANTILES = (0.5, 0.95, 0.99)
# CoreVital's overhead as a share of the call: under 5% is the design target, above 20% hurts.
OVERHEAD_STEPS = ladder(0.05, 0.2)
ERROR_STEPS = ladder(0.01, 0.05)


def build() -> dashboard_builders.Dashboard:
    """The generation-performance dashboard."""
    duration = metric(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION)
    tokens = metric(sc.METRIC_GEN_AI_CLIENT_TOKEN_USAGE)
    first_token = metric(sc.METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    per_token = metric(sc.METRIC_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
    overhead = metric(sc.METRIC_COREVITAL_OVERHEAD_DURATION)
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
        "CoreVital's own cost per call.",
    )

    board = board.with_row(panels.row(ids, "Overview"))
    board = board.with_panel(
        panels.stat(
            ids,
            "Operation duration p95",
            "95 in 100 generate() calls finished within this time.",
            Query(promql.quantile(0.95, duration)),
            unit=SECONDS,
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "Output tokens per second",
            "Tokens generated per second, all models.",
            Query(
                promql.summed_rate(
                    tokens, "sum", (), f'{tokens.label(sc.GEN_AI_TOKEN_TYPE)}="{sc.GEN_AI_TOKEN_TYPE_OUTPUT}"'
                )
            ),
            unit=TOKENS_PER_SECOND,
        )
    )
    board = board.with_panel(
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
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "CoreVital overhead",
            "Time spent in CoreVital (hooks, stopping criterion, read-out) as a share of the time spent "
            "in generate(), all models.",
            Query(
                promql.guarded_ratio(promql.summed_rate(overhead, "sum"), promql.summed_rate(duration, "sum"))
            ),
            unit=SHARE,
            steps=OVERHEAD_STEPS,
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "CoreVital overhead per call p50",
            "Median seconds CoreVital spends on one call.",
            Query(promql.quantile(0.5, overhead)),
            unit=SECONDS,
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "Time to first token p95",
            "95 in 100 calls had their first token (the prefill) within this time.",
            Query(promql.quantile(0.95, first_token)),
            unit=SECONDS,
        )
    )

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
                f"{title} p50 / p95 / p99",
                description,
                [
                    Query(
                        promql.quantile(q, histogram, [model]), f"p{round(q * 100)} {by_model}", exemplar=True
                    )
                    for q in QUANTILES
                ],
                unit=SECONDS,
                width=8,
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
            "Generations per second by model",
            "generate() calls finished per second, by model.",
            [Query(promql.summed_rate(duration, "count", [model]), by_model)],
            unit=PER_SECOND,
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
            "CoreVital overhead per call p50 / p99",
            "Seconds CoreVital spent on one generate() call (forward hooks, stopping criterion, read-out "
            "and telemetry), by model and capture level.",
            [
                Query(
                    promql.quantile(q, overhead, [model, sc.COREVITAL_CAPTURE_LEVEL]),
                    f"p{round(q * 100)} {by_model} {{{{{overhead.label(sc.COREVITAL_CAPTURE_LEVEL)}}}}}",
                    exemplar=True,
                )
                for q in (0.5, 0.99)
            ],
            unit=SECONDS,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            "CoreVital overhead as a share of generate()",
            "Seconds in CoreVital per second in generate(), by model: what the monitoring costs in "
            "production.",
            [Query(overhead_share, by_model)],
            unit=SHARE,
            steps=OVERHEAD_STEPS,
        )
    )
    return board
