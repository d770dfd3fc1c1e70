"""Risk score (0–1) with the factors that explain it (SIGNALS §6)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import flags as fl
from ._util import finite, mean_or
from .compound import CompoundSignal

LOW, MODERATE, HIGH = "low", "moderate", "high"

NAN_OR_INF = "nan_or_inf"
ELEVATED_ENTROPY = "elevated_entropy"
ENTROPY_RISING = "entropy_rising"
LOW_CONFIDENCE_MARGIN = "low_confidence_margin"
LOW_TOPK_MASS = "low_topk_mass"
ELEVATED_SURPRISAL = "elevated_surprisal"


def risk_band(score: float) -> str:
    """``low`` below 0.3, ``high`` above 0.7, ``moderate`` between.

    >>> risk_band(0.1), risk_band(0.5), risk_band(0.9)
    ('low', 'moderate', 'high')
    """
    if score < 0.3:
        return LOW
    return HIGH if score > 0.7 else MODERATE


@dataclass
class RiskAssessment:
    """The risk score of one sequence, its band and the factors that contributed, largest first."""

    score: float
    factors: list[str] = field(default_factory=list)

    @property
    def band(self) -> str:
        return risk_band(self.score)


def heuristic_risk(
    health_flags: fl.HealthFlags,
    entropy: np.ndarray | Iterable[float],
    margin: np.ndarray | Iterable[float],
    topk_mass: np.ndarray | Iterable[float],
    surprisal: np.ndarray | Iterable[float],
    compound: Sequence[CompoundSignal] = (),
) -> RiskAssessment:
    """The composite score of SIGNALS §6.

    NaN/Inf give 1.0. Otherwise the largest boolean floor (repetition 0.9, mid-layer anomaly 0.7,
    attention collapse its severity) plus each continuous term above its gate, plus each compound
    signal's severity, capped at 1. Factors are listed by contribution, largest first.
    """
    contributions: dict[str, float] = {}
    if fl.NAN in health_flags or fl.INF in health_flags:
        return RiskAssessment(1.0, [NAN_OR_INF])
    floors = {
        fl.REPETITION_LOOP: 0.9 if fl.REPETITION_LOOP in health_flags else 0.0,
        fl.MID_LAYER_ANOMALY: 0.7 if fl.MID_LAYER_ANOMALY in health_flags else 0.0,
        fl.ATTENTION_COLLAPSE: health_flags.attention_collapse_severity,
    }
    floor_name = max(floors, key=lambda k: floors[k])
    if floors[floor_name] > 0:
        contributions[floor_name] = floors[floor_name]
    mean_entropy = mean_or(entropy)
    terms = {
        ELEVATED_ENTROPY: (0.3 * min(1.0, mean_entropy / 8.0), 0.05),
        LOW_CONFIDENCE_MARGIN: (0.2 * max(0.0, 1.0 - 5.0 * mean_or(margin, 1.0)), 0.05),
        LOW_TOPK_MASS: (0.15 * max(0.0, 1.0 - mean_or(topk_mass, 1.0)), 0.03),
        ELEVATED_SURPRISAL: (min(0.1, mean_or(surprisal) / 10.0), 0.02),
    }
    values = finite(entropy)
    if values.size >= 6:
        third = values.size // 3
        first, last = float(values[:third].mean()), float(values[-third:].mean())
        if first > 0 and last > 1.3 * first:
            terms[ENTROPY_RISING] = (min(0.2, 0.1 * (last - first) / first), 0.0)
    for name, (term, gate) in terms.items():
        if term > gate:
            contributions[name] = term
    for signal in compound:
        contributions[f"compound:{signal.name}"] = signal.severity
    score = min(1.0, sum(contributions.values()))
    factors = sorted(contributions, key=lambda k: -contributions[k])
    return RiskAssessment(score, factors)
