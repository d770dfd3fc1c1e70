"""Summary statistics and bounded downsampling of per-step series."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Reduction = Literal["mean", "min", "max", "sum"]
_NAN_REDUCTIONS: dict[str, Callable[..., Any]] = {"mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}
_PLAIN_REDUCTIONS: dict[str, Callable[..., Any]] = {
    "mean": np.mean,
    "min": np.min,
    "max": np.max,
    "sum": np.sum,
}


@dataclass(frozen=True)
class SeriesStats:
    """Mean, minimum and maximum of the finite values of a series (None when there are none)."""

    mean: float | None
    min: float | None
    max: float | None


def series_stats(values: np.ndarray | Iterable[float]) -> SeriesStats:
    """NaN-aware mean / min / max. NaN and ±Inf are left out; an empty series gives all ``None``.

    >>> series_stats([1.0, float("nan"), 3.0])
    SeriesStats(mean=2.0, min=1.0, max=3.0)
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return SeriesStats(None, None, None)
    return SeriesStats(float(finite.mean()), float(finite.min()), float(finite.max()))


def pooled(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate the per-sequence arrays of a batch along the step axis."""
    parts = [np.asarray(a, dtype=np.float64) for a in arrays]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros(0)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def layer_aggregate(per_step: np.ndarray, reduction: Reduction) -> np.ndarray:
    """Reduce a ``[steps, layers]`` array over steps, ignoring NaN: one value per layer.

    A layer with no finite value gives NaN (``sum`` gives 0).

    >>> layer_aggregate(np.array([[1.0, 4.0], [3.0, np.nan]]), "mean").tolist()
    [2.0, 4.0]
    """
    array = np.asarray(per_step, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected a [steps, layers] array, got shape {array.shape}")
    if array.shape[0] == 0:
        return np.full(array.shape[1], np.nan)
    nan = np.isnan(array)
    if not nan.any():  # the common case, without the NaN-aware machinery
        return np.asarray(_PLAIN_REDUCTIONS[reduction](array, axis=0))
    if reduction == "sum":
        return np.nansum(array, axis=0)
    finite_any = ~np.all(nan, axis=0)
    out = np.full(array.shape[1], np.nan)
    if finite_any.any():
        reduce = _NAN_REDUCTIONS[reduction]
        out[finite_any] = reduce(array[:, finite_any], axis=0)
    return out


def downsample(values: np.ndarray | Iterable[float], max_points: int) -> tuple[np.ndarray, int]:
    """Shorten a series to at most ``max_points`` values by averaging consecutive buckets.

    Returns ``(values, stride)``: each output value is the NaN-aware mean of ``stride``
    consecutive steps (the last bucket may be shorter); ``stride`` is 1 when nothing was cut.

    >>> downsample([1.0, 3.0, 5.0, 7.0, 9.0], 2)
    (array([3., 8.]), 3)
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size <= max_points:
        return array, 1
    stride = math.ceil(array.size / max_points)
    padded = np.full(math.ceil(array.size / stride) * stride, np.nan)
    padded[: array.size] = array
    buckets = padded.reshape(-1, stride)
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(buckets), axis=1)
        sums = np.nansum(buckets, axis=1)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, stride
