"""Health flags of one sequence (docs/signals.md, "Health flags"), each with the step where it first held."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .. import semconv as sc
from ._util import as_array, nanmedian_rows

NAN = sc.FLAG_NAN_DETECTED
INF = sc.FLAG_INF_DETECTED
ATTENTION_COLLAPSE = sc.FLAG_ATTENTION_COLLAPSE
HIGH_ENTROPY = sc.FLAG_HIGH_ENTROPY
REPETITION_LOOP = sc.FLAG_REPETITION_LOOP
MID_LAYER_ANOMALY = sc.FLAG_MID_LAYER_ANOMALY

#: Every flag name, in reporting order.
FLAG_NAMES: tuple[str, ...] = (NAN, INF, ATTENTION_COLLAPSE, HIGH_ENTROPY, REPETITION_LOOP, MID_LAYER_ANOMALY)


@dataclass
class HealthFlags:
    """Which health flags a sequence raised.

    Attributes:
        fired: the flags that fired, by name, with the step at which each first held.
        attention_collapse_severity: 0 when attention did not collapse, else 0.2, 0.4 or 0.8.
        high_entropy_steps: steps whose entropy exceeded ``high_entropy_threshold_bits`` (a count,
            reported whether or not the ``high_entropy`` flag was raised).
        high_entropy_threshold_bits: the threshold they were counted against (NaN: not judged).
    """

    fired: dict[str, int] = field(default_factory=dict)
    attention_collapse_severity: float = 0.0
    high_entropy_steps: int = 0
    high_entropy_threshold_bits: float = math.nan

    def __contains__(self, name: object) -> bool:
        return name in self.fired

    @property
    def names(self) -> list[str]:
        """Fired flag names in reporting order."""
        return [name for name in FLAG_NAMES if name in self.fired]


def first_step(mask: np.ndarray | Iterable[bool]) -> int | None:
    """Index of the first true entry, ``None`` when there is none.

    >>> first_step([False, True, True])
    1
    """
    array = np.asarray(mask, dtype=bool).ravel()
    hits = np.flatnonzero(array)
    return int(hits[0]) if hits.size else None


def nonfinite_steps(counts: np.ndarray) -> np.ndarray:
    """Per step, whether any layer saw a NaN (or Inf) value; ``counts`` is ``[steps, layers]``."""
    array = np.asarray(counts, dtype=np.float64)
    if array.size == 0:
        return np.zeros(array.shape[:1], dtype=bool)
    return np.nan_to_num(array, nan=0.0).reshape(array.shape[0], -1).sum(axis=1) > 0


def high_entropy_steps(entropy: np.ndarray | Iterable[float], threshold_bits: float) -> np.ndarray:
    """Per step, whether the entropy (bits) exceeded ``threshold_bits``; NaN counts as not."""
    array = as_array(entropy)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(array, nan=-np.inf) > threshold_bits


def high_entropy_flag_step(high: np.ndarray | Iterable[bool], min_share: float = 0.2) -> int | None:
    """The step at which high-entropy steps became the ``high_entropy`` flag: at least
    ``max(2, ceil(min_share × T))`` of them. One uncertain step (often the first, boilerplate token)
    is not a health problem. The threshold that makes a step "high" comes from the model's healthy
    baseline (``signals.baseline.high_entropy_statistic`` is what it is set on).

    >>> high_entropy_flag_step([True, False, False, False]) is None
    True
    >>> high_entropy_flag_step([True, False, True, True])
    2
    """
    mask = np.asarray(high, dtype=bool).ravel()
    needed = max(2, math.ceil(min_share * mask.size))
    hits = np.flatnonzero(mask)
    return int(hits[needed - 1]) if hits.size >= needed else None


def attention_collapse(collapse_rate: np.ndarray | Iterable[float]) -> tuple[float, int | None]:
    """Attention collapse from the per-step share of collapsed heads (docs/signals.md).

    Fires on a catastrophe (mean rate > 0.70: severity 0.8) or on a trend (at least 4 steps; the
    early baseline is the mean rate over the first ``min(5, T // 3)`` steps; the peak exceeds it by
    more than 0.15: severity 0.2, or 0.4 when by more than 0.25).

    Returns:
        ``(severity, step)``: severity 0 and step ``None`` when it did not fire; otherwise the step
        at which the rate first reached the level that made it fire.

    >>> attention_collapse([0.9, 0.9, 0.9])
    (0.8, 0)
    >>> attention_collapse([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.1])
    (0.4, 6)
    """
    rate = as_array(collapse_rate)
    rate = rate[np.isfinite(rate)]
    if rate.size == 0:
        return 0.0, None
    if rate.mean() > 0.70:
        return 0.8, first_step(rate > 0.70) or 0
    if rate.size < 4:
        return 0.0, None
    baseline_steps = max(1, min(5, rate.size // 3))
    baseline = float(rate[:baseline_steps].mean())
    excess = float(rate.max()) - baseline
    if excess <= 0.15:
        return 0.0, None
    step = first_step(rate - baseline > 0.15)
    return (0.4 if excess > 0.25 else 0.2), step


def mid_layer_anomalies(l2_norm: np.ndarray, nonfinite: np.ndarray | None, multiplier: float) -> np.ndarray:
    """Per step and layer, whether a *middle* layer is anomalous (docs/signals.md).

    Early layers are the first third, middle layers the second third. A middle layer is anomalous
    at a step when it has NaN/Inf or an L2 norm above ``multiplier`` × the median L2 norm of the
    early layers *at that step* (so the prefill step is only compared with itself). Layers outside
    the middle third are never marked.

    Args:
        l2_norm: ``[steps, layers]`` L2 norms of the last position.
        nonfinite: ``[steps, layers]`` NaN + Inf counts, or ``None``.

    Returns:
        ``[steps, layers]`` booleans.
    """
    norms = np.asarray(l2_norm, dtype=np.float64)
    marked = np.zeros(norms.shape, dtype=bool)
    if norms.ndim != 2 or norms.shape[1] < 3 or norms.shape[0] == 0:
        return marked
    third = norms.shape[1] // 3
    middle = slice(third, 2 * third)
    baseline = nanmedian_rows(norms[:, :third])
    with np.errstate(invalid="ignore"):
        marked[:, middle] = np.nan_to_num(norms[:, middle], nan=0.0) > multiplier * baseline[:, None]
    if nonfinite is not None:
        counts = np.nan_to_num(np.asarray(nonfinite, dtype=np.float64), nan=0.0)
        marked[:, middle] |= counts[:, middle] > 0
    return marked


def mid_layer_anomaly_steps(
    l2_norm: np.ndarray, nonfinite: np.ndarray | None, multiplier: float
) -> np.ndarray:
    """Per step, whether any middle layer is anomalous (see :func:`mid_layer_anomalies`)."""
    return np.asarray(mid_layer_anomalies(l2_norm, nonfinite, multiplier).any(axis=1), dtype=bool)


def persistent(
    anomalous: np.ndarray | Iterable[bool], min_run: int = 3, min_share: float = 0.25
) -> int | None:
    """The step at which an anomaly became persistent, ``None`` if it never did.

    Persistent means ``min_run`` consecutive anomalous steps, or as many anomalous steps as
    ``max(min(2, T), ceil(min_share × T))``. The old tool flagged a whole run for one anomalous step
    anywhere, which fired on 30–86% of healthy runs.

    >>> persistent([False] * 10 + [True] * 3)  # a run of three
    12
    >>> persistent([True] + [False] * 9) is None
    True
    """
    mask = np.asarray(anomalous, dtype=bool).ravel()
    needed = max(min(2, mask.size), math.ceil(min_share * mask.size))
    run = count = 0
    for step, value in enumerate(mask):
        run = run + 1 if value else 0
        count += int(value)
        if run >= min_run or (value and count >= needed):
            return step
    return None
