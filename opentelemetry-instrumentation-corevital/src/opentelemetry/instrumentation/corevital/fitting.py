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

from .projection import PROJECTION_DIMS
from .signals import as_array
from .signals.representation import StateProbe, representation_layer
from .signals.risk import DEFAULT_RISK_FEATURES, RISK_FEATURES, LogisticPart, RiskModel

#: Folds of the cross-fitting that gives the training rows their probe scores.
PROBE_FOLDS = 5
#: Ridge strength of the probe (on standardised projected dimensions).
PROBE_L2 = 30.0


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


def _fit_part(
    x: np.ndarray, labels: np.ndarray, l2: float, features: tuple[str, ...] = RISK_FEATURES
) -> LogisticPart:
    x = x[:, [RISK_FEATURES.index(f) for f in features]]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
        scale = np.nanstd(x, axis=0) if len(x) else np.ones(x.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
    z = np.where(np.isfinite(x), (x - mean) / scale, 0.0)
    weights, intercept = fit_logistic(z, labels, l2=l2)
    return LogisticPart(
        features,
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


def fit_probe(
    means: np.ndarray, labels: np.ndarray, hidden_size: int, layers: int, l2: float | None = None
) -> StateProbe | None:
    """A ridge logistic regression on the standardised mean projected states (``[samples, dims]``;
    rows with an undefined mean are left out; ``l2`` defaults to :data:`PROBE_L2`); ``None`` without
    two classes among the usable rows."""
    l2 = PROBE_L2 if l2 is None else l2
    x = np.asarray(means, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(y)) < 2:
        return None
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    weights, intercept = fit_logistic((x - mean) / scale, y, l2=l2)
    return StateProbe(
        hidden_size,
        layers,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(float(v) for v in weights),
        float(intercept),
        layer=representation_layer(layers),
    )


def _cross_fitted_probe(
    means: np.ndarray, labels: np.ndarray, hidden_size: int, layers: int, seed: int = 0
) -> np.ndarray:
    """Each row's probe score from a probe fitted without it (:data:`PROBE_FOLDS` folds), so that the
    risk model learns how much to trust the probe on rows the probe never saw, as in use."""
    rng = np.random.default_rng(seed)
    folds = rng.permutation(len(labels)) % PROBE_FOLDS
    out = np.full(len(labels), np.nan)
    for fold in range(PROBE_FOLDS):
        test = folds == fold
        probe = fit_probe(means[~test], labels[~test], hidden_size, layers)
        if probe is not None and test.any():
            out[test] = probe.logit(means[test])
    return out


def fit_risk_model(
    features: np.ndarray,
    labels: np.ndarray | Iterable[float],
    split_output_tokens: int = 48,
    l2_short: float = 10.0,
    l2_long: float = 1.0,
    probe_shape: tuple[int, int] | None = None,
    use: tuple[str, ...] = DEFAULT_RISK_FEATURES,
) -> RiskModel:
    """Fit a :class:`RiskModel` on ``[samples, len(RISK_FEATURES)]`` features and 0/1 labels.

    Each regime's features are standardised with its training rows' mean and standard deviation
    (undefined values imputed with the mean); ``l2_*`` is the ridge strength on the standardised
    weights. A regime without rows, or with one class only, gets a constant model. Each regime
    records its rows' failure rate (``training_failure_rate``), the prior its intercept carries.

    ``use`` names the features the model reads (:data:`DEFAULT_RISK_FEATURES`: the ones that earned
    their place on the development sets, docs/evaluation.md; add :data:`STATE_FEATURES` for the
    hidden-state ones). Rows may continue with their mean projected middle-layer state
    (``[samples, len(RISK_FEATURES) + dims]``). With ``probe_shape`` (the model's hidden size and
    decoder layer count) and ``state_probe`` in ``use``, a :class:`StateProbe` is fitted on those
    means, the training rows' ``state_probe`` feature is its cross-fitted score, and the probe is
    stored in the model.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(list(labels), dtype=np.float64)
    probe = None
    width = len(RISK_FEATURES)
    if x.shape[1] > width:
        means, x = x[:, width:], x[:, :width].copy()
        column = RISK_FEATURES.index("state_probe")
        x[:, column] = np.nan
        if probe_shape is not None and "state_probe" in use:
            probe = fit_probe(means, y, *probe_shape)
            if probe is not None:
                x[:, column] = _cross_fitted_probe(means, y, *probe_shape)
    tokens = np.expm1(x[:, RISK_FEATURES.index("output_tokens_log")])
    short = tokens <= split_output_tokens + 0.5
    return RiskModel(
        split_output_tokens,
        _fit_part(x[short], y[short], l2_short, use),
        _fit_part(x[~short], y[~short], l2_long, use),
        probe,
    )


def scored_rows(model: RiskModel, rows: np.ndarray) -> np.ndarray:
    """Feature rows from ``[..., len(RISK_FEATURES) + PROJECTION_DIMS]`` inputs (the features
    followed by the mean projected state, as the fitting and the evaluation keep them):
    ``state_probe`` filled in by the model's probe (undefined without one). Rows of plain features
    pass unchanged."""
    x = np.asarray(rows, dtype=np.float64)
    width = len(RISK_FEATURES)
    if x.shape[-1] == width:
        return x
    if x.shape[-1] != width + PROJECTION_DIMS:
        raise ValueError(
            f"risk rows need {width} features (signals.risk.RISK_FEATURES), optionally followed by "
            f"the {PROJECTION_DIMS}-dimensional mean projected state; got {x.shape[-1]} columns"
        )
    out = x[..., :width].copy()
    column = RISK_FEATURES.index("state_probe")
    out[..., column] = model.probe.logit(x[..., width:]) if model.probe is not None else np.nan
    return out
