"""CoreVital — model health: how risky are the generations, which health signals fire, what did
CoreVital stop, a summary per model, and which recent generations were the riskiest.

Counting: ``generate()`` calls are counted by the GenAI duration histogram; the health read-out
(risk, flags, signals, interventions) by returned sequence (a call with ``num_return_sequences=4``
or a batch of 4 prompts returns 4). Shares of sequences divide by the risk histogram's count, which
has one observation per returned sequence.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from . import alerts, panels, promql, tables, traceql, variables
from .base import UID_HEALTH, UID_TRACES, new_dashboard
from .panels import (
    CALLS_PER_SECOND,
    PER_SEQUENCE,
    PLAIN,
    SEQUENCES_PER_SECOND,
    SHARE,
    STEPS_PER_SECOND,
    PanelIds,
    Query,
    ladder,
)
from .registry import metric, sc

# Risk bands of corevital.risk.band: low below 0.3, high above 0.7 (both histogram bucket bounds).
RISK_LOW, RISK_HIGH = 0.3, 0.7
RISK_STEPS = ladder(RISK_LOW, RISK_HIGH)
RISKY_SHARE_STEPS = ladder(0.05, alerts.RISKY_SHARE)
THRESHOLD = "$threshold"
TITLE_RISKY_BY_MODEL = f"Risky sequences (risk > {THRESHOLD}) by model"
TITLE_FLAGS_BY_FLAG = "Health flags by flag"


def build() -> dashboard_builders.Dashboard:
    """The model-health dashboard."""
    duration = metric(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION)
    risk = metric(sc.METRIC_COREVITAL_RISK_SCORE)
    entropy = metric(sc.METRIC_COREVITAL_STEP_ENTROPY)
    flags = metric(sc.METRIC_COREVITAL_HEALTH_FLAGS)
    compound = metric(sc.METRIC_COREVITAL_COMPOUND_SIGNALS)
    warnings = metric(sc.METRIC_COREVITAL_EARLY_WARNINGS)
    interventions = metric(sc.METRIC_COREVITAL_INTERVENTIONS)
    model = sc.GEN_AI_REQUEST_MODEL
    by_model = f"{{{{{promql.MODEL_LABEL}}}}}"
    ids = PanelIds()
    board = new_dashboard(
        UID_HEALTH,
        "model health",
        "Risk score, health flags, compound signals, early warnings and interventions of every "
        "instrumented generate() call, a summary per model, and the riskiest recent generations in Tempo.",
        [variables.risk_threshold()],
    )

    calls_per_second = promql.summed_rate(duration, "count")
    sequences_per_second = promql.summed_rate(risk, "count")
    board = board.with_row(panels.row(ids, "Overview"))
    overview = (
        panels.stat(
            ids,
            "generate() calls per second",
            "generate() calls finished per second (successful or not), all selected models.",
            Query(calls_per_second),
            unit=CALLS_PER_SECOND,
        ),
        panels.stat(
            ids,
            "Returned sequences per second",
            "Sequences the calls returned per second (a batch or num_return_sequences returns several "
            "per call). Risk, flags and signals are counted per sequence.",
            Query(sequences_per_second),
            unit=SEQUENCES_PER_SECOND,
        ),
        panels.stat(
            ids,
            "Risk score p90",
            "9 in 10 sequences scored at most this (0 = healthy, 1 = failed). Orange from 0.3, red "
            "above 0.7: the moderate and high risk bands.",
            Query(promql.quantile(0.9, risk)),
            unit=PLAIN,
            steps=RISK_STEPS,
            decimals=2,
        ),
        panels.stat(
            ids,
            f"Risky sequences (risk > {THRESHOLD})",
            "Share of returned sequences whose risk score is above the Risk threshold variable, from the "
            "histogram bucket le=$threshold.",
            Query(promql.share_above(risk, THRESHOLD)),
            unit=SHARE,
            steps=RISKY_SHARE_STEPS,
        ),
        panels.stat(
            ids,
            "Health flags per sequence",
            "Health flags raised per returned sequence, all flags together (a sequence can raise several).",
            Query(promql.or_zero(promql.per_sequence(flags, risk), sequences_per_second)),
            unit=PER_SEQUENCE,
            decimals=2,
        ),
        panels.stat(
            ids,
            "Stopped sequences",
            "Share of returned sequences CoreVital stopped (stop_on).",
            Query(promql.or_zero(promql.per_sequence(interventions, risk), sequences_per_second)),
            unit=SHARE,
        ),
    )
    for panel in overview:
        board = board.with_panel(panel)

    board = board.with_row(panels.row(ids, "Summary by model"))
    board = board.with_panel(
        tables.summary_table(
            ids,
            "Models over the time range",
            "One row per model over the dashboard's time range (instant queries over $__range). Click a "
            "model to show only it.",
            promql.MODEL_LABEL,
            "Model",
            [
                tables.Column("Calls", promql.summed_increase(duration, "count", [model]), PLAIN, 0),
                tables.Column("Sequences", promql.summed_increase(risk, "count", [model]), PLAIN, 0),
                tables.Column(
                    "Risky share",
                    "1 - "
                    + promql.guarded_ratio(
                        promql.summed_increase(risk, "bucket", [model], promql.le_matcher(risk, THRESHOLD)),
                        promql.summed_increase(risk, "count", [model]),
                    ),
                    SHARE,
                ),
                tables.Column("Risk p90", promql.quantile(0.9, risk, [model], instant=True), PLAIN, 2),
                tables.Column("Risk mean", promql.mean(risk, [model], instant=True), PLAIN, 2),
                tables.Column(
                    "Flags per sequence",
                    promql.or_zero(
                        promql.guarded_ratio(
                            promql.summed_increase(flags, "", [model]),
                            promql.summed_increase(risk, "count", [model]),
                        ),
                        promql.summed_increase(risk, "count", [model]),
                    ),
                    PLAIN,
                    2,
                ),
                tables.Column("Mean duration", promql.mean(duration, [model], instant=True), panels.SECONDS),
            ],
            dashboard_uid=UID_HEALTH,
        )
    )

    board = board.with_row(panels.row(ids, "Risk"))
    board = board.with_panel(
        panels.timeseries(
            ids,
            "Risk score p50 / p90 / p99 and mean by model",
            "Quantiles of the per-sequence risk score, from the histogram buckets, and the exact mean. A "
            "rising p99 with a flat p50 means a few generations fail badly; a rising p50 or mean means the "
            "model degrades overall.",
            [
                *(
                    Query(promql.quantile(q, risk, [model]), f"p{round(q * 100)} {by_model}", exemplar=True)
                    for q in (0.5, 0.9, 0.99)
                ),
                Query(promql.mean(risk, [model]), f"mean {by_model}"),
            ],
            unit=PLAIN,
            steps=RISK_STEPS,
            max_value=1,
            width=8,
        )
    )
    board = board.with_panel(
        panels.heatmap(
            ids,
            "Risk score distribution",
            "Sequences per second in each risk-score bucket. Healthy traffic sits in the bottom rows; "
            "a band at the top (0.95–1] is a failure mode (NaN/Inf scores 1.0, loops ≥ 0.9).",
            Query(promql.buckets(risk), "{{le}}", exemplar=True),
            unit=PLAIN,
            cell_unit=SEQUENCES_PER_SECOND,
            width=8,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            TITLE_RISKY_BY_MODEL,
            "Share of each model's returned sequences whose risk score is above the Risk threshold "
            f"variable. The {alerts.ALERT_PREFIX}RiskySequences alert fires above "
            f"{alerts.RISKY_SHARE:.0%} at risk > {alerts.RISKY_SCORE} for 10 minutes.",
            [Query(promql.share_above(risk, THRESHOLD, [model]), by_model)],
            unit=SHARE,
            steps=RISKY_SHARE_STEPS,
            max_value=1,
            width=8,
        )
    )
    bands = (
        (sc.RISK_BAND_LOW, promql.share_at_most(risk, RISK_LOW)),
        (sc.RISK_BAND_MODERATE, promql.share_between(risk, RISK_LOW, RISK_HIGH)),
        (sc.RISK_BAND_HIGH, promql.share_above(risk, RISK_HIGH)),
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            "Risk bands",
            f"Share of returned sequences in each risk band: {sc.RISK_BAND_LOW} up to {RISK_LOW}, "
            f"{sc.RISK_BAND_HIGH} above {RISK_HIGH}, {sc.RISK_BAND_MODERATE} between (from the histogram "
            "buckets). The bands stack to 100 %.",
            [Query(expr, band) for band, expr in bands],
            unit=SHARE,
            stacked=True,
            max_value=1,
            width=24,
            height=6,
        )
    )

    board = board.with_row(panels.row(ids, "Health signals"))
    signal_panels = (
        (
            TITLE_FLAGS_BY_FLAG,
            "Share of returned sequences raising each health flag (nan_detected, repetition_loop, "
            f"mid_layer_anomaly …). Alerts: {alerts.ALERT_PREFIX}NaNOrInfGenerations on any NaN/Inf, "
            f"{alerts.ALERT_PREFIX}RepetitionLoops above {alerts.REPETITION_SHARE:.0%} loops for 10 minutes.",
            flags,
            sc.COREVITAL_FLAG_NAME,
        ),
        (
            "Compound signals by name",
            "Share of returned sequences with each compound signal (several signals agreeing on one "
            "failure mode).",
            compound,
            sc.COREVITAL_COMPOUND_SIGNAL_NAME,
        ),
        (
            "Early warnings by signal",
            "Share of returned sequences raising each early-warning signal (what corevital.early_warnings "
            "counts; off in the shipped profiles).",
            warnings,
            sc.COREVITAL_EARLY_WARNING_SIGNAL,
        ),
        (
            "Interventions by signal",
            "Share of returned sequences CoreVital stopped (stop_on), by the signal that stopped them.",
            interventions,
            sc.COREVITAL_INTERVENTION_SIGNAL,
        ),
    )
    for title, description, counter, attribute in signal_panels:
        board = board.with_panel(
            panels.timeseries(
                ids,
                title,
                description,
                [
                    Query(
                        promql.per_sequence(counter, risk, [attribute]), f"{{{{{counter.label(attribute)}}}}}"
                    )
                ],
                unit=SHARE,
                bars=True,
                no_value="none raised",
            )
        )
    board = board.with_panel(
        panels.heatmap(
            ids,
            "Step entropy distribution",
            "Decoding steps per second in each entropy bucket (bits of the raw next-token distribution). "
            "Mass moving up means the model is less sure of its tokens.",
            Query(promql.buckets(entropy), "{{le}}"),
            unit=panels.BITS,
            cell_unit=STEPS_PER_SECOND,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            "Step entropy p50 / p90 and mean by model",
            "Median, 90th percentile and exact mean entropy of the decoding steps, in bits.",
            [
                *(
                    Query(promql.quantile(q, entropy, [model]), f"p{round(q * 100)} {by_model}")
                    for q in (0.5, 0.9)
                ),
                Query(promql.mean(entropy, [model]), f"mean {by_model}"),
            ],
            unit=panels.BITS,
        )
    )

    board = board.with_row(panels.row(ids, "Riskiest recent generations (Tempo)"))
    board = board.with_panel(
        tables.trace_table(
            ids,
            "Riskiest recent generations",
            "Generation spans with a risk score of at least $threshold; sort by the risk column. Click a "
            "span name to open its trace on the traces dashboard; the Span ID opens it in Explore.",
            traceql.risky_generations(),
            traces_uid=UID_TRACES,
            steps=RISK_STEPS,
        )
    )
    return board
