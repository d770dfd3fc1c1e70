"""Fitting CoreVital's models from labelled data: the risk model and Platt scaling.

Used by ``corevital calibrate --labels`` and by the evaluation harness (``eval/``), never by the
instrumentation itself: nothing on the path of a ``generate()`` call imports this module.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .signals._util import as_array
from .signals.risk import RISK_FEATURES, LogisticPart, RiskModel


@dataclass(frozen=True)
class PlattScaling:
    """``p = σ(a · s + b)``: maps a score to a calibrated probability."""

    a: float
    b: float

    def __call__(self, scores: np.ndarray | Iterable[float]) -> np.ndarray:
        return _sigmoid(self.a * as_array(scores) + self.b)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))


def fit_logistic(
    features: np.ndarray, labels: np.ndarray | Iterable[float], l2: float = 1e-6
) -> tuple[np.ndarray, float]:
    """Logistic regression by maximum likelihood (Newton's method with an L2 penalty on the
    weights, not the intercept): returns ``(weights, intercept)``.

    Args:
        features: ``[samples, features]``, already standardised if the penalty should treat them alike.
        labels: 0/1 per sample.
        l2: ridge strength (keeps separable data finite).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = as_array(labels)
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if y.size == 0 or len(np.unique(y)) < 2:
        rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6)) if y.size else 0.5
        return np.zeros(x.shape[1]), math.log(rate / (1 - rate))
    design = np.column_stack([x, np.ones(len(x))])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 1e-9  # the intercept is (almost) not penalised
    weights = np.zeros(design.shape[1])
    for _ in range(100):
        p = _sigmoid(design @ weights)
        gradient = design.T @ (p - y) + penalty * weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-10:
            break
    return weights[:-1], float(weights[-1])


def fit_platt(scores: np.ndarray | Iterable[float], labels: np.ndarray | Iterable[float]) -> PlattScaling:
    """Fit Platt scaling by maximum likelihood (a one-feature :func:`fit_logistic`).

    >>> model = fit_platt([0.1, 0.2, 0.8, 0.9, 0.3, 0.7], [0, 0, 1, 1, 1, 0])
    >>> bool(model(np.array([0.9]))[0] > model(np.array([0.1]))[0])
    True
    """
    weights, intercept = fit_logistic(as_array(scores)[:, None], labels)
    return PlattScaling(float(weights[0]), intercept)


def _fit_part(x: np.ndarray, labels: np.ndarray, l2: float) -> LogisticPart:
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
        scale = np.nanstd(x, axis=0) if len(x) else np.ones(x.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
    z = np.where(np.isfinite(x), (x - mean) / scale, 0.0)
    weights, intercept = fit_logistic(z, labels, l2=l2)
    return LogisticPart(
        RISK_FEATURES,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(float(v) for v in weights),
        float(intercept),
        _failure_rate(labels),
    )


def _failure_rate(labels: np.ndarray) -> float | None:
    """The share of failures among the labels, clipped into (0, 1) so that the prior shift stays
    finite; ``None`` without labels."""
    y = np.asarray(labels, dtype=np.float64)
    y = y[np.isfinite(y)]
    if not y.size:
        return None
    return float(np.clip(y.mean(), 1e-3, 1 - 1e-3))


def fit_risk_model(
    features: np.ndarray,
    labels: np.ndarray | Iterable[float],
    split_output_tokens: int = 48,
    l2_short: float = 10.0,
    l2_long: float = 1.0,
) -> RiskModel:
    """Fit a :class:`RiskModel` on ``[samples, len(RISK_FEATURES)]`` features and 0/1 labels.

    Each regime's features are standardised with its training rows' mean and standard deviation
    (undefined values imputed with the mean); ``l2_*`` is the ridge strength on the standardised
    weights. A regime without rows, or with one class only, gets a constant model. Each regime
    records its rows' failure rate (``training_failure_rate``), the prior its intercept carries.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(list(labels), dtype=np.float64)
    tokens = np.expm1(x[:, RISK_FEATURES.index("output_tokens_log")])
    short = tokens <= split_output_tokens + 0.5
    return RiskModel(
        split_output_tokens,
        _fit_part(x[short], y[short], l2_short),
        _fit_part(x[~short], y[~short], l2_long),
    )
