"""A model's own normal: what healthy generations of one model look like, and the thresholds read
from them at a stated false-alarm budget (docs/signals.md, "Baseline").

A :class:`Baseline` is built from healthy generations of one model (``corevital calibrate
--prompts``; the shipped one for SmolLM2 by the evaluation) and stored in the model profile. It
applies only to a model of the same shape — hidden size, decoder layers, vocabulary size — and then
judges a generation against that model's healthy range:

- each decoder layer's **L2-norm level** (the median log L2 norm of its last-position state over
  the decoding steps), as a robust z-score against the layer's own healthy levels — never against
  the other layers;
- the thresholds of the flags that read "unusual for this model" (high entropy, mid-layer anomaly),
  each set so that the flag fires on at most ``budget`` of healthy generations.

Every statistic here is a pure function of the per-step arrays of one generation, shared by the
read-out and by the code that builds a baseline, so a threshold is always compared with the number
it was fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from . import flags as fl
from ._util import as_array, nanmedian_rows

#: What a baseline says about the baseline used for a call (``corevital.baseline.source``).
SOURCE_PROFILE = "profile"
SOURCE_NONE = "none"


@dataclass(frozen=True)
class LayerRange:
    """One per-layer statistic over healthy generations: robust centre and scale per layer, and the
    largest ``|z|`` over the layers that healthy generations reach, at the budget."""

    center: tuple[float, ...]
    scale: tuple[float, ...]
    limit: float

    def z(self, values: np.ndarray) -> np.ndarray:
        """Per layer, ``(value − centre) / scale`` (NaN where the value is undefined)."""
        return (np.asarray(values, dtype=np.float64) - np.asarray(self.center)) / np.asarray(self.scale)


@dataclass(frozen=True)
class Baseline:
    """The healthy range of one model, and the thresholds read from it.

    Attributes:
        hidden_size, layers, vocab_size: the shape of the model it was built on; it applies to no
            other (:meth:`applies`).
        runs: the healthy generations it was built from.
        budget: the false-alarm budget: each threshold below fires on at most this share of the
            healthy generations it was built from (a conformal quantile, see :func:`quantile_at`).
        high_entropy_threshold_bits: a step above this entropy counts towards the ``high_entropy``
            flag (:func:`high_entropy_statistic` is what it was set on).
        l2_explosion_multiplier: the mid-layer anomaly's multiplier (:func:`mid_layer_statistic`).
        level: per-layer L2-norm level (:func:`layer_levels`); a layer whose ``|z|`` exceeds
            ``limit`` is out of its range.
    """

    hidden_size: int
    layers: int
    vocab_size: int
    runs: int
    budget: float
    high_entropy_threshold_bits: float
    l2_explosion_multiplier: float
    level: LayerRange

    def applies(self, hidden_size: int, layers: int, vocab_size: int) -> bool:
        """Whether the baseline was built on a model of this shape."""
        return (self.hidden_size, self.layers, self.vocab_size) == (hidden_size, layers, vocab_size)


# -- the per-generation statistics -------------------------------------------------------------
def _decoding_log_norms(l2_norm: np.ndarray) -> np.ndarray:
    """``[decoding steps, layers]`` natural log of the L2 norms, the prefill (step 0, which
    summarises the prompt) left out; NaN where a norm is not finite and positive."""
    norms = np.asarray(l2_norm, dtype=np.float64)
    if norms.ndim != 2:
        return np.zeros((0, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(norms[1:])
    return np.where(np.isfinite(logs), logs, np.nan)


def layer_levels(l2_norm: np.ndarray) -> np.ndarray:
    """Per layer, the median log L2 norm over the decoding steps (NaN without one): the layer's
    level in this generation. The median, because a few tokens carry "massive activations" — norms
    several times the usual in some layers — and one of them in a short answer would move a mean.

    >>> layer_levels(np.array([[1.0, 1.0], [np.e, 1.0], [np.e, 1.0], [np.e ** 5, 1.0]])).tolist()
    [1.0, 0.0]
    """
    logs = _decoding_log_norms(l2_norm)
    if not logs.shape[0]:
        return np.full(np.shape(l2_norm)[-1], np.nan)
    return _nanmedian_columns(logs)


def _nanmedian_columns(values: np.ndarray) -> np.ndarray:
    """The median of each column's non-NaN values (NaN for a column without one), without warnings."""
    return np.asarray(nanmedian_rows(np.asarray(values, dtype=np.float64).T))


def high_entropy_statistic(entropy: np.ndarray | Iterable[float]) -> float:
    """The largest threshold at which the ``high_entropy`` flag would fire: the k-th largest step
    entropy, with k = max(2, ⌈0.2 T⌉) the steps the flag needs (``flags.high_entropy_flag_step``).
    −inf when there are fewer steps than that.

    >>> high_entropy_statistic([5.0, 1.0, 4.0, 0.5])
    4.0
    """
    values = as_array(entropy)
    needed = max(2, math.ceil(0.2 * values.size))
    kept = np.sort(np.nan_to_num(values, nan=-np.inf))[::-1]
    return float(kept[needed - 1]) if kept.size >= needed else -math.inf


def mid_layer_statistic(
    l2_norm: np.ndarray, nonfinite: np.ndarray | None = None, min_run: int = 3, min_share: float = 0.25
) -> float:
    """The largest multiplier at which the mid-layer anomaly would fire (``flags.persistent`` over
    ``flags.mid_layer_anomaly_steps``): +inf when a middle layer holds NaN/Inf persistently, −inf
    when it never fires."""
    norms = np.asarray(l2_norm, dtype=np.float64)
    if norms.ndim != 2 or norms.shape[1] < 3 or norms.shape[0] == 0:
        return -math.inf
    third = norms.shape[1] // 3
    early = nanmedian_rows(norms[:, :third])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.nan_to_num(norms[:, third : 2 * third], nan=0.0) / early[:, None]
    per_step = np.nan_to_num(np.max(ratio, axis=1), nan=-np.inf, posinf=np.inf)
    if nonfinite is not None:
        counts = np.nan_to_num(np.asarray(nonfinite, dtype=np.float64)[:, third : 2 * third], nan=0.0)
        per_step = np.where(counts.sum(axis=1) > 0, np.inf, per_step)
    # firing is monotone in the multiplier: bisect over the step values for the largest that fires
    candidates = np.unique(per_step[~np.isnan(per_step) & (per_step > -np.inf)])
    low, high, best = 0, candidates.size - 1, -math.inf
    while low <= high:
        middle = (low + high) // 2
        if fl.persistent(per_step >= candidates[middle], min_run, min_share) is not None:
            best, low = float(candidates[middle]), middle + 1
        else:
            high = middle - 1
    return best


# -- judging a generation --------------------------------------------------------------------------
def out_of_range(l2_norm: np.ndarray, baseline: Baseline) -> np.ndarray:
    """Per layer, whether its L2-norm level is out of its healthy range (``[layers]`` booleans; all
    false when the layer count differs from the baseline's)."""
    norms = np.asarray(l2_norm, dtype=np.float64)
    if norms.ndim != 2 or norms.shape[1] != baseline.layers:
        return np.zeros(norms.shape[-1] if norms.ndim == 2 else 0, dtype=bool)
    with np.errstate(invalid="ignore"):
        level = np.abs(baseline.level.z(layer_levels(norms))) > baseline.level.limit
    return np.nan_to_num(level, nan=0.0).astype(bool)


# -- building one ------------------------------------------------------------------------------------
def quantile_at(values: Sequence[float] | np.ndarray, budget: float) -> float:
    """The threshold that at most ``budget`` of new values exceed (the split-conformal quantile:
    the ⌈(n + 1)(1 − budget)⌉-th smallest of the ``n`` values), +inf when there are too few.

    >>> quantile_at(list(range(1, 100)), 0.02)
    98.0
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    rank = math.ceil((ordered.size + 1) * (1.0 - budget))
    return float(ordered[rank - 1]) if 1 <= rank <= ordered.size else math.inf


def runs_needed(budget: float) -> int:
    """The fewest healthy generations a baseline at ``budget`` needs: ``⌈1 / budget⌉ − 1``.

    >>> runs_needed(0.02), runs_needed(0.05)
    (49, 19)
    """
    return max(1, math.ceil(1.0 / budget - 1e-9) - 1)


def layer_range(per_run: np.ndarray, budget: float) -> LayerRange:
    """A :class:`LayerRange` from ``[runs, layers]`` per-generation values: median and scaled MAD
    per layer, and the budget's quantile of each run's largest ``|z|``."""
    values = np.asarray(per_run, dtype=np.float64)
    center = np.nanmedian(values, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(values - center), axis=0)
    floor = 1e-6 + 1e-3 * np.abs(center)
    scale = np.where(np.isfinite(mad) & (mad > floor), mad, floor)
    z = np.abs(values - center) / scale
    worst = np.nanmax(np.where(np.isfinite(z), z, -np.inf), axis=1)
    return LayerRange(
        tuple(float(v) for v in center), tuple(float(v) for v in scale), quantile_at(worst, budget)
    )


@dataclass(frozen=True)
class HealthyRun:
    """What a baseline is built from, per healthy generation: its entropy per step and its
    ``[steps, layers]`` L2 norms (``None`` below the ``hidden`` level)."""

    entropy: np.ndarray
    l2_norm: np.ndarray | None


def build_baseline(
    runs: Sequence[HealthyRun],
    hidden_size: int,
    layers: int,
    vocab_size: int,
    budget: float,
    min_run: int = 3,
    min_share: float = 0.25,
) -> Baseline:
    """The baseline of one model from its healthy generations, every threshold at ``budget``.

    Raises:
        ValueError: fewer runs than :func:`runs_needed` (a quantile at that budget would be
            undefined), runs without hidden states, or runs of another layer count.
    """
    if not 0.0 < budget < 1.0:
        raise ValueError(f"the false-alarm budget must be between 0 and 1, got {budget}")
    if len(runs) < runs_needed(budget):
        raise ValueError(
            f"a baseline at a false-alarm budget of {budget:g} needs at least {runs_needed(budget)} healthy "
            f"generations, got {len(runs)}"
        )
    norms = [r.l2_norm for r in runs]
    if any(n is None or np.ndim(n) != 2 or np.shape(n)[1] != layers for n in norms):
        raise ValueError(f"every healthy generation needs [steps, {layers}] hidden-state L2 norms")
    levels = np.stack([layer_levels(n) for n in norms if n is not None])
    entropy = [high_entropy_statistic(r.entropy) for r in runs]
    mid = [mid_layer_statistic(n, None, min_run, min_share) for n in norms if n is not None]
    return Baseline(
        hidden_size=hidden_size,
        layers=layers,
        vocab_size=vocab_size,
        runs=len(runs),
        budget=budget,
        high_entropy_threshold_bits=quantile_at(entropy, budget),
        l2_explosion_multiplier=max(1.0 + 1e-6, quantile_at(mid, budget)),
        level=layer_range(levels, budget),
    )
