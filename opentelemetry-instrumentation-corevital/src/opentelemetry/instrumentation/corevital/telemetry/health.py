"""The health read-out as span attributes and span events (plain data; :mod:`.writer` emits them)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import report as rep
from .. import semconv as sc
from ..signals import flags as fl
from ..signals.assess import HealthReport
from ..signals.fingerprint import FINGERPRINT_VERSION

Attributes = dict[str, Any]

_FLAG_ATTRIBUTES = {
    fl.NAN: sc.COREVITAL_FLAG_NAN_DETECTED,
    fl.INF: sc.COREVITAL_FLAG_INF_DETECTED,
    fl.ATTENTION_COLLAPSE: sc.COREVITAL_FLAG_ATTENTION_COLLAPSE,
    fl.HIGH_ENTROPY: sc.COREVITAL_FLAG_HIGH_ENTROPY,
    fl.REPETITION_LOOP: sc.COREVITAL_FLAG_REPETITION_LOOP,
    fl.MID_LAYER_ANOMALY: sc.COREVITAL_FLAG_MID_LAYER_ANOMALY,
}


def health_attributes(health: HealthReport, prompt_hash: str | None) -> Attributes:
    """Span attributes: the worst sequence's read-out, plus per-sequence arrays for a batch."""
    worst = health.primary
    attributes: Attributes = {
        sc.COREVITAL_RISK_SCORE: round(worst.risk.score, 6),
        sc.COREVITAL_RISK_BAND: worst.risk.band,
        sc.COREVITAL_RISK_FACTORS: list(worst.risk.factors),
        sc.COREVITAL_FLAGS: worst.flags.names,
        sc.COREVITAL_HIGH_ENTROPY_STEPS: worst.flags.high_entropy_steps,
        sc.COREVITAL_FLAG_ATTENTION_COLLAPSE_SEVERITY: worst.flags.attention_collapse_severity,
        sc.COREVITAL_COMPOUND_SIGNALS_NAMES: [c.name for c in worst.compound],
        sc.COREVITAL_COMPOUND_SIGNALS_SEVERITIES: [c.severity for c in worst.compound],
        sc.COREVITAL_EARLY_WARNING_FAILURE_RISK: worst.early_warning.failure_risk,
        sc.COREVITAL_EARLY_WARNING_SIGNALS: list(worst.early_warning.signals),
        sc.COREVITAL_LAYER_BLAME_LAYERS: [b.layer for b in worst.blame],
        sc.COREVITAL_LAYER_BLAME_DETAILS: _json(
            [{"layer": b.layer, "reasons": b.reasons, "severity": b.severity} for b in worst.blame]
        ),
        sc.COREVITAL_FINGERPRINT_VECTOR: list(worst.fingerprint),
        sc.COREVITAL_FINGERPRINT_VERSION: FINGERPRINT_VERSION,
        sc.COREVITAL_NARRATIVE: worst.narrative,
        sc.COREVITAL_SERIES_SEQUENCE_INDEX: worst.index,
    }
    for name, key in _FLAG_ATTRIBUTES.items():
        attributes[key] = name in worst.flags
    if math.isfinite(worst.flags.high_entropy_threshold_bits):
        attributes[sc.COREVITAL_HIGH_ENTROPY_THRESHOLD] = round(worst.flags.high_entropy_threshold_bits, 6)
    if health.baseline is not None:
        attributes[sc.COREVITAL_BASELINE_SOURCE] = sc.BASELINE_SOURCE_PROFILE
        attributes[sc.COREVITAL_BASELINE_BUDGET] = health.baseline.budget
    else:
        attributes[sc.COREVITAL_BASELINE_SOURCE] = sc.BASELINE_SOURCE_NONE
    if prompt_hash is not None:
        attributes[sc.COREVITAL_PROMPT_HASH] = prompt_hash
    if worst.divergence is not None:
        attributes[sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE] = round(worst.divergence.score, 6)
        attributes[sc.COREVITAL_CALIBRATION_ANOMALIES] = list(worst.divergence.anomalies)
    if len(health.sequences) > 1:
        attributes[sc.COREVITAL_SEQUENCE_RISK_SCORES] = [round(h.risk.score, 6) for h in health.sequences]
        attributes[sc.COREVITAL_SEQUENCE_FAILURE_RISKS] = [
            h.early_warning.failure_risk for h in health.sequences
        ]
    return attributes


def intervention_attributes(interventions: Sequence[rep.Intervention]) -> Attributes:
    """What CoreVital stopped: the signal and step of the first stopped sequence."""
    if not interventions:
        return {}
    first = min(interventions, key=lambda i: i.row)
    return {sc.COREVITAL_INTERVENTION_SIGNAL: first.signal, sc.COREVITAL_INTERVENTION_STEP: first.step}


@dataclass(frozen=True)
class SpanEvent:
    """One span event to add: name, attributes, time (Unix ns; ``None``: now), and its priority
    when the span's event budget is short (lower is kept first)."""

    name: str
    attributes: Attributes
    timestamp: int | None
    priority: int


def health_events(health: HealthReport, step_times_ns: Sequence[int]) -> list[SpanEvent]:
    """One event per detector firing (at its step's time) and per intervention; never per token.
    Priorities: interventions, then health flags, then early warnings."""

    def when(step: int, recorded: int = 0) -> int | None:
        if recorded:
            return recorded
        return step_times_ns[step] if 0 <= step < len(step_times_ns) else None

    events: list[SpanEvent] = []
    for intervention in health.interventions:
        events.append(
            SpanEvent(
                sc.EVENT_COREVITAL_INTERVENTION,
                {
                    sc.COREVITAL_INTERVENTION_SIGNAL: intervention.signal,
                    sc.COREVITAL_STEP: intervention.step,
                    sc.COREVITAL_SEQUENCE_INDEX: intervention.row,
                },
                when(intervention.step),
                0,
            )
        )
    for sequence in health.sequences:
        for firing in sequence.firings:
            attributes: Attributes = {
                sc.COREVITAL_STEP: firing.step,
                sc.COREVITAL_SEQUENCE_INDEX: sequence.index,
            }
            if firing.kind == rep.HEALTH_FLAG:
                name, priority = sc.EVENT_COREVITAL_HEALTH_FLAG, 1
                attributes[sc.COREVITAL_FLAG_NAME] = firing.name
            elif firing.kind == rep.EARLY_WARNING:
                name, priority = sc.EVENT_COREVITAL_EARLY_WARNING, 2
                attributes[sc.COREVITAL_EARLY_WARNING_SIGNAL] = firing.name
            else:
                continue
            evidence = {k: v for k, v in firing.evidence.items() if math.isfinite(v)}
            if evidence:
                attributes[sc.COREVITAL_EVIDENCE] = _json(evidence)
            events.append(SpanEvent(name, attributes, when(firing.step, firing.time_unix_nano), priority))
    return events


def evaluation_attributes(health: HealthReport) -> Attributes:
    """Attributes of the standard ``gen_ai.evaluation.result`` event for the worst sequence."""
    worst = health.primary
    return {
        sc.GEN_AI_EVALUATION_NAME: sc.COREVITAL_RISK_NAME,
        sc.GEN_AI_EVALUATION_SCORE_VALUE: round(worst.risk.score, 6),
        sc.GEN_AI_EVALUATION_SCORE_LABEL: worst.risk.band,
        sc.GEN_AI_EVALUATION_EXPLANATION: ", ".join(worst.risk.factors) or "no risk factor",
        sc.GEN_AI_REQUEST_MODEL: health.model,
    }


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
