"""Compound signals: patterns that only mean something together (docs/signals.md, "Compound signals")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .. import semconv as sc
from ._util import finite, mean_or, slope

CONTEXT_LOSS = sc.COMPOUND_SIGNAL_CONTEXT_LOSS
CONFIDENT_CONFUSION = sc.COMPOUND_SIGNAL_CONFIDENT_CONFUSION
DEGENERATING_GENERATION = sc.COMPOUND_SIGNAL_DEGENERATING_GENERATION
ATTENTION_BOTTLENECK = sc.COMPOUND_SIGNAL_ATTENTION_BOTTLENECK
CONFIDENT_REPETITION_RISK = sc.COMPOUND_SIGNAL_CONFIDENT_REPETITION_RISK

#: Every compound signal name.
SIGNAL_NAMES: tuple[str, ...] = (
    CONTEXT_LOSS,
    CONFIDENT_CONFUSION,
    DEGENERATING_GENERATION,
    ATTENTION_BOTTLENECK,
    CONFIDENT_REPETITION_RISK,
)


@dataclass(frozen=True)
class CompoundSignal:
    """One compound signal: its name, severity (0–1) and the numbers that made it fire."""

    name: str
    severity: float
    evidence: dict[str, float] = field(default_factory=dict)


def _last5(values: np.ndarray | Iterable[float] | None) -> float | None:
    if values is None:
        return None
    kept = finite(values)[-5:]
    return float(kept.mean()) if kept.size else None


def compound_signals(
    entropy: np.ndarray | Iterable[float],
    margin: np.ndarray | Iterable[float],
    surprisal: np.ndarray | Iterable[float],
    topk_mass: np.ndarray | Iterable[float],
    *,
    high_entropy_threshold_bits: float = 4.0,
    basin_score: np.ndarray | Iterable[float] | None = None,
    basin_score_baseline: float = 0.25,
    collapsed_head_share: float | None = None,
    repetition_evidence: bool = False,
) -> list[CompoundSignal]:
    """Detect the five compound signals over one sequence's series.

    - ``context_loss`` (0.75): last-5 mean entropy above the threshold and mean attention basin
      score below the model's baseline (needs attention capture);
    - ``confident_confusion`` (0.5): last-5 mean entropy above the threshold with last-5 mean
      margin above 0.3;
    - ``degenerating_generation`` (0.7): at least 10 steps with entropy rising (> 0.05 bit/step),
      margin falling (< −0.01/step) and surprisal rising (> 0.05 bit/step);
    - ``attention_bottleneck`` (0.65): collapsed-head share above 0.2 and mean entropy above 3.5;
    - ``confident_repetition_risk`` (0.4): last-5 entropy < 2, surprisal < 1 and top-10 mass
      > 0.95 *together with repetition evidence* (alone it fired on 92–97% of healthy runs).
    """
    found: list[CompoundSignal] = []
    entropy5, margin5 = _last5(entropy), _last5(margin)
    surprisal5, mass5 = _last5(surprisal), _last5(topk_mass)
    threshold = high_entropy_threshold_bits
    if entropy5 is not None and entropy5 > threshold and basin_score is not None:
        basin = finite(basin_score)
        if basin.size and basin.mean() < basin_score_baseline:
            found.append(
                CompoundSignal(
                    CONTEXT_LOSS, 0.75, {"entropy_last5": entropy5, "basin_mean": float(basin.mean())}
                )
            )
    if entropy5 is not None and margin5 is not None and entropy5 > threshold and margin5 > 0.3:
        found.append(
            CompoundSignal(CONFIDENT_CONFUSION, 0.5, {"entropy_last5": entropy5, "margin_last5": margin5})
        )
    if finite(entropy).size >= 10:
        slopes = {
            "entropy_slope": slope(entropy),
            "margin_slope": slope(margin),
            "surprisal_slope": slope(surprisal),
        }
        if (
            slopes["entropy_slope"] > 0.05
            and slopes["margin_slope"] < -0.01
            and slopes["surprisal_slope"] > 0.05
        ):
            found.append(CompoundSignal(DEGENERATING_GENERATION, 0.7, slopes))
    mean_entropy = mean_or(entropy, default=0.0)
    if collapsed_head_share is not None and collapsed_head_share > 0.2 and mean_entropy > 3.5:
        found.append(
            CompoundSignal(
                ATTENTION_BOTTLENECK,
                0.65,
                {"collapsed_head_share": collapsed_head_share, "entropy_mean": mean_entropy},
            )
        )
    if (
        repetition_evidence
        and entropy5 is not None
        and surprisal5 is not None
        and mass5 is not None
        and entropy5 < 2.0
        and surprisal5 < 1.0
        and mass5 > 0.95
    ):
        found.append(
            CompoundSignal(
                CONFIDENT_REPETITION_RISK,
                0.4,
                {"entropy_last5": entropy5, "surprisal_last5": surprisal5, "topk_mass_last5": mass5},
            )
        )
    return found
