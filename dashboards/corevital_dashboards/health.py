"""CoreVital — model health: how risky are the generations, which health signals fire, what did
CoreVital stop, and which recent generations were the riskiest."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from . import panels, promql, traceql, variables
from .base import UID_HEALTH, new_dashboard
from .panels import PER_SECOND, PLAIN, SHARE, PanelIds, Query, ladder
from .registry import metric, sc

# Risk bands of corevital.risk.band: low below 0.3, high above 0.7.
RISK_STEPS = ladder(0.3, 0.7)
# A generation with risk >= 0.5 is worth a look; the share panel reads the 0.5 bucket boundary.
RISKY_SCORE = 0.5


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
        "instrumented generate() call, and the riskiest recent generations in Tempo.",
        [variables.risk_threshold()],
    )

    generations_per_second = promql.summed_rate(duration, "count")
    board = board.with_row(panels.row(ids, "Overview"))
    board = board.with_panel(
        panels.stat(
            ids,
            "Generations per second",
            "How many generate() calls finished per second (successful or not).",
            Query(generations_per_second),
            unit=PER_SECOND,
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "Risk score p90",
            "9 in 10 generations scored at most this (0 = healthy, 1 = failed). Orange from 0.3, red "
            "above 0.7: the moderate and high risk bands.",
            Query(promql.quantile(0.9, risk)),
            unit=PLAIN,
            steps=RISK_STEPS,
            decimals=2,
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            f"Risky generations (risk > {RISKY_SCORE})",
            f"Share of generations whose risk score is above {RISKY_SCORE}, from the histogram bucket "
            f"le={RISKY_SCORE}.",
            Query(promql.share_above(risk, RISKY_SCORE)),
            unit=SHARE,
            steps=ladder(0.05, 0.2),
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "Health flags per second",
            "Health flags raised per second, all flags together.",
            Query(promql.or_zero(promql.summed_rate(flags), generations_per_second)),
            unit=PER_SECOND,
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "Early warnings per second",
            "Early-warning signals raised per second, all signals together.",
            Query(promql.or_zero(promql.summed_rate(warnings), generations_per_second)),
            unit=PER_SECOND,
        )
    )
    board = board.with_panel(
        panels.stat(
            ids,
            "Interventions per second",
            "Sequences CoreVital stopped per second (stop_on).",
            Query(promql.or_zero(promql.summed_rate(interventions), generations_per_second)),
            unit=PER_SECOND,
        )
    )

    board = board.with_row(panels.row(ids, "Risk"))
    board = board.with_panel(
        panels.timeseries(
            ids,
            "Risk score p50 / p90 / p99 by model",
            "Quantiles of the per-sequence risk score, from the histogram buckets. A rising p99 with a "
            "flat p50 means a few generations fail badly; a rising p50 means the model degrades overall.",
            [
                Query(promql.quantile(q, risk, [model]), f"p{round(q * 100)} {by_model}", exemplar=True)
                for q in (0.5, 0.9, 0.99)
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
            "Generations per second in each risk-score bucket. Healthy traffic sits in the bottom rows; "
            "a band near 1 is a failure mode (NaN/Inf, loops).",
            Query(promql.buckets(risk), "{{le}}", exemplar=True),
            unit=PLAIN,
            width=8,
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            f"Risky generations (risk > {RISKY_SCORE}) by model",
            f"Share of each model's generations whose risk score is above {RISKY_SCORE}.",
            [Query(promql.share_above(risk, RISKY_SCORE, [model]), by_model)],
            unit=SHARE,
            steps=ladder(0.05, 0.2),
            max_value=1,
            width=8,
        )
    )

    board = board.with_row(panels.row(ids, "Health signals"))
    signal_panels = (
        (
            "Health flags by flag",
            "Health flags raised per second, by flag (nan_detected, repetition_loop, mid_layer_anomaly …).",
            flags,
            sc.COREVITAL_FLAG_NAME,
        ),
        (
            "Compound signals by name",
            "Compound signals (several signals agreeing on one failure mode) detected per second.",
            compound,
            sc.COREVITAL_COMPOUND_SIGNAL_NAME,
        ),
        (
            "Early warnings by signal",
            "Early-warning signals raised per second (trend detectors and passed-through flags).",
            warnings,
            sc.COREVITAL_EARLY_WARNING_SIGNAL,
        ),
        (
            "Interventions by signal",
            "Sequences CoreVital stopped per second (stop_on), by the signal that stopped them.",
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
                [Query(promql.summed_rate(counter, "", [attribute]), f"{{{{{counter.label(attribute)}}}}}")],
                unit=PER_SECOND,
                stacked=True,
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
        )
    )
    board = board.with_panel(
        panels.timeseries(
            ids,
            "Step entropy p50 / p90 by model",
            "Median and 90th percentile entropy of the decoding steps, in bits.",
            [
                Query(promql.quantile(q, entropy, [model]), f"p{round(q * 100)} {by_model}")
                for q in (0.5, 0.9)
            ],
            unit=panels.BITS,
        )
    )

    board = board.with_row(panels.row(ids, "Riskiest recent generations (Tempo)"))
    board = board.with_panel(
        panels.trace_table(
            ids,
            "Riskiest recent generations",
            "Generation spans with a risk score of at least $threshold; sort by the risk column. The "
            "Span ID opens the trace view.",
            traceql.risky_generations(),
            steps=RISK_STEPS,
        )
    )
    return board
