"""Early-warning trend detectors over the steps generated so far (SIGNALS §9, window 5)."""

from __future__ import annotations

import math
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


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if math.isfinite(v)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# The detectors work on plain lists: they only read the ends of a series, and the streaming
# monitor calls them at every step with a handful of values, where numpy's overhead dominates.


def entropy_accelerating(entropy: Iterable[float]) -> bool:
    """At least 10 steps, and the last 3 changes of the 5-step moving mean are positive and growing."""
    values = _finite(entropy)
    if len(values) < 10:
        return False
    tail = values[-(WINDOW + 3) :]
    moving = [_mean(tail[i : i + WINDOW]) for i in range(4)]
    changes = [moving[i + 1] - moving[i] for i in range(3)]
    return changes[0] > 0 and changes[0] < changes[1] < changes[2]


def margin_collapsed(margin: Iterable[float]) -> bool:
    """Each of the last 5 top-1/top-2 margins is below 0.1."""
    last = _finite(margin)[-WINDOW:]
    return len(last) == WINDOW and all(v < 0.1 for v in last)


def margin_declining(margin: Iterable[float]) -> bool:
    """At least 10 steps, and the mean of the last 5 margins is below 0.3 × the mean of the first 5."""
    values = _finite(margin)
    if len(values) < 10:
        return False
    first = _mean(values[:WINDOW])
    return first > 0 and _mean(values[-WINDOW:]) / first < 0.3


def surprisal_volatile(surprisal: Iterable[float]) -> bool:
    """Coefficient of variation (population std / mean) of the last 5 surprisals above 1.5."""
    last = _finite(surprisal)[-WINDOW:]
    if len(last) < WINDOW:
        return False
    mean = _mean(last)
    return mean > 0 and math.sqrt(_mean([(v - mean) ** 2 for v in last])) / mean > 1.5


def entropy_margin_divergence(
    entropy: Iterable[float], margin: Iterable[float], threshold_bits: float
) -> bool:
    """Mean entropy of the last 5 steps above the threshold while the mean margin stays above 0.3."""
    last_entropy, last_margin = _finite(entropy)[-WINDOW:], _finite(margin)[-WINDOW:]
    if len(last_entropy) < WINDOW or len(last_margin) < WINDOW:
        return False
    return _mean(last_entropy) > threshold_bits and _mean(last_margin) > 0.3


def detect(
    entropy: Iterable[float],
    margin: Iterable[float],
    surprisal: Iterable[float],
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
    e, m, s = list(as_array(entropy)), list(as_array(margin)), list(as_array(surprisal))
    first: dict[str, int] = {}
    for step in range(len(e)):
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
    streamed: Mapping[str, int] | None = None,
) -> EarlyWarning:
    """Streaming detectors plus the health flags they pass through (repetition, mid-layer, collapse).

    ``streamed``: what a streaming monitor already found (then the series are not scanned again).
    """
    signals = dict(streamed) if streamed is not None else scan(entropy, margin, surprisal, threshold_bits)
    if health_flags is not None:
        for name in PASSTHROUGH:
            if name in health_flags.fired:
                signals.setdefault(name, health_flags.fired[name])
    return EarlyWarning(signals)
