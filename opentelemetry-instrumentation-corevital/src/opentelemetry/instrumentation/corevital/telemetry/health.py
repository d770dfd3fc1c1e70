"""Writing the health read-out (signals) to the span, to events, to a log event and to metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opentelemetry._logs import Logger, LogRecord
from opentelemetry.context import Context
from opentelemetry.trace import Span

from .. import semconv as sc
from ..report import Intervention
from ..signals import flags as fl
from ..signals.assess import SequenceHealth
from ..signals.fingerprint import FINGERPRINT_VERSION
from ..signals.streaming import EARLY_WARNING, HEALTH_FLAG

Attributes = dict[str, Any]

_FLAG_ATTRIBUTES = {
    fl.NAN: sc.COREVITAL_FLAG_NAN_DETECTED,
    fl.INF: sc.COREVITAL_FLAG_INF_DETECTED,
    fl.ATTENTION_COLLAPSE: sc.COREVITAL_FLAG_ATTENTION_COLLAPSE,
    fl.REPETITION_LOOP: sc.COREVITAL_FLAG_REPETITION_LOOP,
    fl.MID_LAYER_ANOMALY: sc.COREVITAL_FLAG_MID_LAYER_ANOMALY,
}


def worst_index(health: Sequence[SequenceHealth]) -> int:
    """The sequence the span describes: highest risk, then highest failure risk, then first."""
    return max(
        range(len(health)), key=lambda i: (health[i].risk.score, health[i].early_warning.failure_risk, -i)
    )


def health_attributes(health: Sequence[SequenceHealth], prompt_hash: str | None) -> Attributes:
    """Span attributes: the worst sequence's read-out, plus per-sequence arrays for a batch."""
    if not health:
        return {}
    worst = health[worst_index(health)]
    attributes: Attributes = {
        sc.COREVITAL_RISK_SCORE: round(worst.risk.score, 6),
        sc.COREVITAL_RISK_BAND: worst.risk.band,
        sc.COREVITAL_RISK_FACTORS: list(worst.risk.factors),
        sc.COREVITAL_FLAGS: worst.flags.names,
        sc.COREVITAL_FLAG_HIGH_ENTROPY_STEPS: worst.flags.high_entropy_steps,
        sc.COREVITAL_FLAG_ATTENTION_COLLAPSE_SEVERITY: worst.flags.attention_collapse_severity,
        sc.COREVITAL_COMPOUND_SIGNALS_NAMES: [c.name for c in worst.compound],
        sc.COREVITAL_COMPOUND_SIGNALS_SEVERITIES: [c.severity for c in worst.compound],
        sc.COREVITAL_EARLY_WARNING_FAILURE_RISK: worst.early_warning.failure_risk,
        sc.COREVITAL_EARLY_WARNING_SIGNALS: list(worst.early_warning.signals),
        sc.COREVITAL_LAYER_BLAME_LAYERS: [b.layer for b in worst.blame],
        sc.COREVITAL_LAYER_BLAME_DETAILS: json.dumps(
            [{"layer": b.layer, "reasons": b.reasons, "severity": b.severity} for b in worst.blame],
            separators=(",", ":"),
        ),
        sc.COREVITAL_FINGERPRINT_VECTOR: list(worst.fingerprint),
        sc.COREVITAL_FINGERPRINT_VERSION: FINGERPRINT_VERSION,
        sc.COREVITAL_NARRATIVE: worst.narrative,
        sc.COREVITAL_SERIES_SEQUENCE_INDEX: worst.index,
    }
    for name, key in _FLAG_ATTRIBUTES.items():
        attributes[key] = name in worst.flags
    if prompt_hash is not None:
        attributes[sc.COREVITAL_PROMPT_HASH] = prompt_hash
    if worst.divergence is not None:
        attributes[sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE] = round(worst.divergence.score, 6)
        attributes[sc.COREVITAL_CALIBRATION_ANOMALIES] = list(worst.divergence.anomalies)
    if len(health) > 1:
        attributes[sc.COREVITAL_SEQUENCE_RISK_SCORES] = [round(h.risk.score, 6) for h in health]
        attributes[sc.COREVITAL_SEQUENCE_FAILURE_RISKS] = [h.early_warning.failure_risk for h in health]
    return attributes


def intervention_attributes(interventions: Sequence[Intervention]) -> Attributes:
    """What CoreVital stopped: the signal and step of each stopped sequence (first one as scalars)."""
    if not interventions:
        return {}
    ordered = sorted(interventions, key=lambda i: i.row)
    return {
        sc.COREVITAL_INTERVENTION_SIGNAL: ordered[0].signal,
        sc.COREVITAL_INTERVENTION_STEP: ordered[0].step,
    }


def add_events(
    span: Span,
    health: Sequence[SequenceHealth],
    interventions: Sequence[Intervention],
    step_times_ns: Sequence[int],
) -> None:
    """One event per detector firing (at its step's time) and per intervention; never per token."""

    def when(step: int, recorded: int = 0) -> int | None:
        if recorded:
            return recorded
        return step_times_ns[step] if 0 <= step < len(step_times_ns) else None

    for sequence in health:
        for firing in sequence.firings:
            attributes: Attributes = {
                sc.COREVITAL_STEP: firing.step,
                sc.COREVITAL_SEQUENCE_INDEX: sequence.index,
            }
            if firing.kind == HEALTH_FLAG:
                name, attributes[sc.COREVITAL_FLAG_NAME] = sc.EVENT_COREVITAL_HEALTH_FLAG, firing.name
            elif firing.kind == EARLY_WARNING:
                name, attributes[sc.COREVITAL_EARLY_WARNING_SIGNAL] = (
                    sc.EVENT_COREVITAL_EARLY_WARNING,
                    firing.name,
                )
            else:
                continue
            if firing.evidence:
                attributes[sc.COREVITAL_EVIDENCE] = json.dumps(firing.evidence, separators=(",", ":"))
            span.add_event(name, attributes, timestamp=when(firing.step, firing.time_unix_nano))
    for intervention in interventions:
        span.add_event(
            sc.EVENT_COREVITAL_INTERVENTION,
            {
                sc.COREVITAL_INTERVENTION_SIGNAL: intervention.signal,
                sc.COREVITAL_STEP: intervention.step,
                sc.COREVITAL_SEQUENCE_INDEX: intervention.row,
            },
            timestamp=when(intervention.step),
        )


def emit_evaluation(logger: Logger, health: Sequence[SequenceHealth], model: str, context: Context) -> None:
    """The standard ``gen_ai.evaluation.result`` event (as a log record) for the worst sequence,
    parented to the span through ``context``."""
    if not health:
        return
    worst = health[worst_index(health)]
    logger.emit(
        LogRecord(
            event_name=sc.EVENT_GEN_AI_EVALUATION_RESULT,
            context=context,
            attributes={
                sc.GEN_AI_EVALUATION_NAME: sc.COREVITAL_RISK_NAME,
                sc.GEN_AI_EVALUATION_SCORE_VALUE: round(worst.risk.score, 6),
                sc.GEN_AI_EVALUATION_SCORE_LABEL: worst.risk.band,
                sc.GEN_AI_EVALUATION_EXPLANATION: ", ".join(worst.risk.factors) or "no risk factor",
                sc.GEN_AI_REQUEST_MODEL: model,
            },
        )
    )
