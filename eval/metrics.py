"""Calibration metrics of the evaluation: expected calibration error and Brier score.

Evaluation only: the instrumentation never computes these.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from opentelemetry.instrumentation.corevital.signals._util import as_array


def expected_calibration_error(
    probabilities: np.ndarray | Iterable[float], labels: np.ndarray | Iterable[float], bins: int = 10
) -> float:
    """ECE over ``bins`` equal-width bins: Σ (n_b / N) · |mean label − mean probability| in each bin.

    >>> expected_calibration_error([0.0, 1.0], [0, 1])
    0.0
    """
    p, y = as_array(probabilities), as_array(labels)
    if p.size == 0 or p.size != y.size:
        raise ValueError("probabilities and labels must be non-empty and of equal length")
    index = np.minimum((np.clip(p, 0, 1) * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            error += in_bin.mean() * abs(float(y[in_bin].mean()) - float(p[in_bin].mean()))
    return float(error)


def brier_score(probabilities: np.ndarray | Iterable[float], labels: np.ndarray | Iterable[float]) -> float:
    """Mean squared difference between probability and outcome."""
    p, y = as_array(probabilities), as_array(labels)
    return float(np.mean((p - y) ** 2))
