"""Early-warning trend detectors over the steps generated so far (SIGNALS §9, window 5)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import flags as fl
from ._util import as_array

WINDOW = 5

ENTROPY_ACCELERATING = "entropy_accelerating"
MARGIN_COLLAPSED = "margin_collapsed"
MARGIN_DECLINING = "margin_declining"
SURPRISAL_VOLATILE = "surprisal_volatile"
ENTROPY_MARGIN_DIVERGENCE = "entropy_margin_divergence"

#: failure_risk floor of each detector, and of the health flags passed through.
FLOORS: Mapping[str, float] = {
    ENTROPY_ACCELERATING: 0.7,
    MARGIN_COLLAPSED: 0.6,
    MARGIN_DECLINING: 0.5,
    SURPRISAL_VOLATILE: 0.5,
    ENTROPY_MARGIN_DIVERGENCE: 0.55,
}
PASSTHROUGH: Mapping[str, float] = {
    fl.REPETITION_LOOP: 0.9,
    fl.MID_LAYER_ANOMALY: 0.6,
    fl.ATTENTION_COLLAPSE: 0.4,
}

#: Every early-warning signal name.
SIGNAL_NAMES: tuple[str, ...] = tuple(FLOORS)


def _last(values: np.ndarray) -> np.ndarray:
    kept = values[np.isfinite(values)]
    return kept[-WINDOW:]


def entropy_accelerating(entropy: np.ndarray | Iterable[float]) -> bool:
    """At least 10 steps, and the last 3 changes of the 5-step moving mean are positive and growing."""
    values = as_array(entropy)
    values = values[np.isfinite(values)]
    if values.size < 10:
        return False
    moving = np.convolve(values, np.ones(WINDOW) / WINDOW, mode="valid")
    changes = np.diff(moving)[-3:]
    return bool(changes.size == 3 and (changes > 0).all() and changes[0] < changes[1] < changes[2])


def margin_collapsed(margin: np.ndarray | Iterable[float]) -> bool:
    """Each of the last 5 top-1/top-2 margins is below 0.1."""
    last = _last(as_array(margin))
    return bool(last.size == WINDOW and (last < 0.1).all())


def margin_declining(margin: np.ndarray | Iterable[float]) -> bool:
    """At least 10 steps, and the mean of the last 5 margins is below 0.3 × the mean of the first 5."""
    values = as_array(margin)
    values = values[np.isfinite(values)]
    if values.size < 10:
        return False
    first = float(values[:WINDOW].mean())
    return bool(first > 0 and float(values[-WINDOW:].mean()) / first < 0.3)


def surprisal_volatile(surprisal: np.ndarray | Iterable[float]) -> bool:
    """Coefficient of variation of the last 5 surprisals above 1.5."""
    last = _last(as_array(surprisal))
    if last.size < WINDOW:
        return False
    mean = float(last.mean())
    return bool(mean > 0 and float(last.std()) / mean > 1.5)


def entropy_margin_divergence(
    entropy: np.ndarray | Iterable[float], margin: np.ndarray | Iterable[float], threshold_bits: float
) -> bool:
    """Mean entropy of the last 5 steps above the threshold while the mean margin stays above 0.3."""
    last_entropy, last_margin = _last(as_array(entropy)), _last(as_array(margin))
    if last_entropy.size < WINDOW or last_margin.size < WINDOW:
        return False
    return bool(last_entropy.mean() > threshold_bits and last_margin.mean() > 0.3)


def detect(
    entropy: np.ndarray | Iterable[float],
    margin: np.ndarray | Iterable[float],
    surprisal: np.ndarray | Iterable[float],
    threshold_bits: float,
) -> list[str]:
    """The detectors that hold on these series (the steps generated so far)."""
    fired = []
    if entropy_accelerating(entropy):
        fired.append(ENTROPY_ACCELERATING)
    if margin_collapsed(margin):
        fired.append(MARGIN_COLLAPSED)
    if margin_declining(margin):
        fired.append(MARGIN_DECLINING)
    if surprisal_volatile(surprisal):
        fired.append(SURPRISAL_VOLATILE)
    if entropy_margin_divergence(entropy, margin, threshold_bits):
        fired.append(ENTROPY_MARGIN_DIVERGENCE)
    return fired


@dataclass
class EarlyWarning:
    """Early-warning result of one sequence.

    Attributes:
        signals: detector (and passed-through flag) names with the first step each held.
        failure_risk: the largest floor among them (0 when none fired).
    """

    signals: dict[str, int] = field(default_factory=dict)

    @property
    def failure_risk(self) -> float:
        floors = {**FLOORS, **PASSTHROUGH}
        return max((floors[name] for name in self.signals), default=0.0)


def scan(
    entropy: np.ndarray | Iterable[float],
    margin: np.ndarray | Iterable[float],
    surprisal: np.ndarray | Iterable[float],
    threshold_bits: float,
) -> dict[str, int]:
    """Run the detectors as the steps arrive: the first step at which each one held."""
    e, m, s = as_array(entropy), as_array(margin), as_array(surprisal)
    first: dict[str, int] = {}
    for step in range(e.size):
        end = step + 1
        for name in detect(e[:end], m[:end], s[:end], threshold_bits):
            first.setdefault(name, step)
    return first


def early_warning(
    entropy: np.ndarray | Iterable[float],
    margin: np.ndarray | Iterable[float],
    surprisal: np.ndarray | Iterable[float],
    threshold_bits: float,
    health_flags: fl.HealthFlags | None = None,
) -> EarlyWarning:
    """Streaming detectors plus the health flags they pass through (repetition, mid-layer, collapse)."""
    signals = scan(entropy, margin, surprisal, threshold_bits)
    if health_flags is not None:
        for name in PASSTHROUGH:
            if name in health_flags.fired:
                signals.setdefault(name, health_flags.fired[name])
    return EarlyWarning(signals)
