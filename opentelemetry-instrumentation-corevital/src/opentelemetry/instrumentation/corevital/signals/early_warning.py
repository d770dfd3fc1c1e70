"""Early-warning trend detectors over the steps generated so far (docs/signals.md, "Early warning").

Every detector reads only the ends of its series (at most the first 5 and the last 10 values), so the
streaming monitor can run the one detector list, :func:`detect`, on short windows at every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .. import semconv as sc
from ._util import as_array, finite_list, list_mean

WINDOW = 5

ENTROPY_ACCELERATING = sc.EARLY_WARNING_ENTROPY_ACCELERATING
MARGIN_COLLAPSED = sc.EARLY_WARNING_MARGIN_COLLAPSED
MARGIN_DECLINING = sc.EARLY_WARNING_MARGIN_DECLINING
SURPRISAL_VOLATILE = sc.EARLY_WARNING_SURPRISAL_VOLATILE
ENTROPY_MARGIN_DIVERGENCE = sc.EARLY_WARNING_ENTROPY_MARGIN_DIVERGENCE

#: failure_risk floor of each detector.
FLOORS: Mapping[str, float] = {
    ENTROPY_ACCELERATING: 0.7,
    MARGIN_COLLAPSED: 0.6,
    MARGIN_DECLINING: 0.5,
    SURPRISAL_VOLATILE: 0.5,
    ENTROPY_MARGIN_DIVERGENCE: 0.55,
}

#: Every early-warning signal name.
SIGNAL_NAMES: tuple[str, ...] = tuple(FLOORS)


# The detectors work on plain lists: they only read the ends of a series, and the streaming
# monitor calls them at every step with a handful of values, where numpy's overhead dominates.


def entropy_accelerating(entropy: Iterable[float]) -> bool:
    """At least 10 steps, and the last 3 changes of the 5-step moving mean are positive and growing."""
    values = finite_list(entropy)
    if len(values) < 10:
        return False
    tail = values[-(WINDOW + 3) :]
    moving = [list_mean(tail[i : i + WINDOW]) for i in range(4)]
    changes = [moving[i + 1] - moving[i] for i in range(3)]
    return changes[0] > 0 and changes[0] < changes[1] < changes[2]


def margin_collapsed(margin: Iterable[float]) -> bool:
    """Each of the last 5 top-1/top-2 margins is below 0.1."""
    last = finite_list(margin)[-WINDOW:]
    return len(last) == WINDOW and all(v < 0.1 for v in last)


def margin_declining(margin: Iterable[float]) -> bool:
    """At least 10 steps, and the mean of the last 5 margins is below 0.3 × the mean of the first 5."""
    values = finite_list(margin)
    if len(values) < 10:
        return False
    first = list_mean(values[:WINDOW])
    return first > 0 and list_mean(values[-WINDOW:]) / first < 0.3


def surprisal_volatile(surprisal: Iterable[float]) -> bool:
    """Coefficient of variation (population std / mean) of the last 5 surprisals above 1.5."""
    last = finite_list(surprisal)[-WINDOW:]
    if len(last) < WINDOW:
        return False
    mean = list_mean(last)
    return mean > 0 and math.sqrt(list_mean([(v - mean) ** 2 for v in last])) / mean > 1.5


def entropy_margin_divergence(
    entropy: Iterable[float], margin: Iterable[float], threshold_bits: float
) -> bool:
    """Mean entropy of the last 5 steps above the threshold while the mean margin stays above 0.3."""
    last_entropy, last_margin = finite_list(entropy)[-WINDOW:], finite_list(margin)[-WINDOW:]
    if len(last_entropy) < WINDOW or len(last_margin) < WINDOW:
        return False
    return list_mean(last_entropy) > threshold_bits and list_mean(last_margin) > 0.3


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
    """Early-warning result of one sequence: the trend detectors only (health flags are reported as
    flags, not passed through here).

    Attributes:
        signals: detector names with the first step each held.
        failure_risk: the largest floor among them (0 when none fired).
    """

    signals: dict[str, int] = field(default_factory=dict)

    @property
    def failure_risk(self) -> float:
        return max((FLOORS[name] for name in self.signals), default=0.0)


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
    streamed: Mapping[str, int] | None = None,
) -> EarlyWarning:
    """The trend detectors of one sequence: the first step each one held.

    ``streamed``: what a streaming monitor already found (then the series are not scanned again).
    """
    signals = dict(streamed) if streamed is not None else scan(entropy, margin, surprisal, threshold_bits)
    return EarlyWarning({name: step for name, step in signals.items() if name in FLOORS})
