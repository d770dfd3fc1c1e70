"""Small NaN-aware helpers shared by the signal modules."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def as_array(values: np.ndarray | Iterable[float]) -> np.ndarray:
    """A float64 1-D copy of ``values``."""
    return np.asarray(values, dtype=np.float64).ravel()


def finite(values: np.ndarray | Iterable[float]) -> np.ndarray:
    """Only the finite values."""
    array = as_array(values)
    return array[np.isfinite(array)]


def mean_or(values: np.ndarray | Iterable[float], default: float = 0.0) -> float:
    """Mean of the finite values, ``default`` when there are none."""
    kept = finite(values)
    return float(kept.mean()) if kept.size else default


def slope(values: np.ndarray | Iterable[float]) -> float:
    """Ordinary least-squares slope per step of the finite values (0 with fewer than 2)."""
    array = as_array(values)
    steps = np.arange(array.size, dtype=np.float64)
    keep = np.isfinite(array)
    if keep.sum() < 2:
        return 0.0
    x, y = steps[keep], array[keep]
    x = x - x.mean()
    denominator = float((x * x).sum())
    return float((x * (y - y.mean())).sum() / denominator) if denominator > 0 else 0.0


# Plain-list versions for the per-step detectors, which see a handful of values at a time (numpy's
# per-call overhead would dominate there).


def finite_list(values: Iterable[float]) -> list[float]:
    """The finite values, as Python floats.

    >>> finite_list([1.0, float("nan"), 2.0])
    [1.0, 2.0]
    """
    return [float(v) for v in values if math.isfinite(v)]


def list_mean(values: list[float], default: float = math.nan) -> float:
    """Mean of a list, ``default`` when it is empty."""
    return sum(values) / len(values) if values else default


# NaN-aware reductions along an axis that never warn: ``np.nanmean`` and friends raise a
# RuntimeWarning on all-NaN slices, and silencing it with ``warnings.catch_warnings`` is neither
# thread-safe nor cheap on the path of every call.


def nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean of the non-NaN values along ``axis``; NaN where there are none.

    >>> nanmean(np.array([[1.0, np.nan], [np.nan, np.nan]]), axis=1).tolist()
    [1.0, nan]
    """
    array = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(array)
    counts = present.sum(axis=axis)
    sums = np.where(present, array, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))


def nanstd(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Population standard deviation of the non-NaN values along ``axis``; NaN where there are none."""
    array = np.asarray(values, dtype=np.float64)
    mean = nanmean(array, axis=axis)
    centred = array - (np.expand_dims(mean, axis) if axis is not None else mean)
    return np.sqrt(nanmean(centred * centred, axis=axis))


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """Median of each row's non-NaN values; NaN for a row without any (a fast path when all are finite)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size and not np.isnan(array).any():
        return np.asarray(np.median(array, axis=1))
    out = np.full(array.shape[0], np.nan)
    for row, line in enumerate(array):
        kept = line[~np.isnan(line)]
        if kept.size:
            out[row] = float(np.median(kept))
    return out
