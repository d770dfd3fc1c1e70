"""Calibration against known-healthy runs, and calibration of the risk score (SIGNALS §12)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._util import as_array, finite

PROFILE_VERSION = 1
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class ProfileError(ValueError):
    """A calibration profile could not be read (wrong format, version or contents)."""


@dataclass(frozen=True)
class Distribution:
    """Summary of one metric's values over healthy runs (not the raw values)."""

    count: int
    mean: float
    std: float
    quantiles: tuple[float, ...]

    @classmethod
    def of(cls, values: np.ndarray | Iterable[float]) -> Distribution:
        kept = finite(values)
        if kept.size == 0:
            return cls(0, math.nan, math.nan, tuple(math.nan for _ in QUANTILES))
        quantiles = tuple(float(q) for q in np.quantile(kept, QUANTILES))
        return cls(int(kept.size), float(kept.mean()), float(kept.std()), quantiles)

    def z(self, values: np.ndarray) -> np.ndarray:
        """z-scores of ``values``; NaN where the distribution has no spread."""
        if not self.count or not self.std or not math.isfinite(self.std):
            return np.full(np.shape(values), np.nan)
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.std


@dataclass
class CalibrationProfile:
    """Per-step metric distributions of a model's healthy runs.

    ``metrics`` maps a series name (``entropy``, ``margin``, ``surprisal`` …) to its distribution;
    ``layer_metrics`` maps a per-layer field (``hidden.l2_norm``, ``attention.entropy_mean``,
    ``attention.collapsed_heads``) to one distribution per layer.
    """

    model: str
    runs: int
    metrics: dict[str, Distribution] = field(default_factory=dict)
    layer_metrics: dict[str, list[Distribution]] = field(default_factory=dict)
    version: int = PROFILE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_json(cls, text: str) -> CalibrationProfile:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ProfileError("a calibration profile is a JSON object")
            if data.get("version") != PROFILE_VERSION:
                raise ProfileError(
                    f"unsupported profile version {data.get('version')!r}, expected {PROFILE_VERSION}"
                )
            metrics = {name: _distribution(d) for name, d in data.get("metrics", {}).items()}
            layer_metrics = {
                name: [_distribution(d) for d in layers]
                for name, layers in data.get("layer_metrics", {}).items()
            }
            return cls(str(data["model"]), int(data["runs"]), metrics, layer_metrics)
        except ProfileError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ProfileError(f"malformed calibration profile: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> CalibrationProfile:
        try:
            return cls.from_json(Path(path).read_text())
        except OSError as exc:
            raise ProfileError(f"cannot read calibration profile {path}: {exc}") from exc


def _distribution(data: Mapping[str, Any]) -> Distribution:
    return Distribution(int(data["count"]), float(data["mean"]), float(data["std"]), tuple(data["quantiles"]))


class ProfileBuilder:
    """Accumulates healthy runs, then summarises them into a :class:`CalibrationProfile`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.runs = 0
        self._values: dict[str, list[np.ndarray]] = {}
        self._layer_values: dict[str, list[np.ndarray]] = {}

    def add(self, series: Mapping[str, np.ndarray], layers: Mapping[str, np.ndarray] | None = None) -> None:
        """One run: per-step series by name, and per-layer ``[steps, layers]`` arrays by name."""
        self.runs += 1
        for name, values in series.items():
            self._values.setdefault(name, []).append(as_array(values))
        for name, per_step in (layers or {}).items():
            self._layer_values.setdefault(name, []).append(np.asarray(per_step, dtype=np.float64))

    def build(self) -> CalibrationProfile:
        metrics = {name: Distribution.of(np.concatenate(parts)) for name, parts in self._values.items()}
        layer_metrics = {}
        for name, parts in self._layer_values.items():
            stacked = np.concatenate([p for p in parts if p.ndim == 2 and p.size], axis=0)
            layer_metrics[name] = [Distribution.of(stacked[:, layer]) for layer in range(stacked.shape[1])]
        return CalibrationProfile(self.model, self.runs, metrics, layer_metrics)


@dataclass
class Divergence:
    """How far a run is from the healthy profile: score in [0, 1] and the metrics with |z| > 3."""

    score: float
    anomalies: list[str] = field(default_factory=list)


def divergence(
    profile: CalibrationProfile,
    series: Mapping[str, np.ndarray],
    layers: Mapping[str, np.ndarray] | None = None,
    z_anomaly: float = 3.0,
) -> Divergence:
    """``min(1, mean |z| / 6)`` over every step of every profiled metric; anomalies are the metrics
    (``entropy``, ``hidden.l2_norm[12]`` …) with at least one step beyond ``z_anomaly``."""
    all_z: list[np.ndarray] = []
    anomalies: list[str] = []

    def add(name: str, z: np.ndarray) -> None:
        kept = np.abs(z[np.isfinite(z)])
        if kept.size:
            all_z.append(kept)
            if kept.max() > z_anomaly:
                anomalies.append(name)

    for name, values in series.items():
        if name in profile.metrics:
            add(name, profile.metrics[name].z(as_array(values)))
    for name, per_step in (layers or {}).items():
        distributions = profile.layer_metrics.get(name)
        array = np.asarray(per_step, dtype=np.float64)
        if not distributions or array.ndim != 2 or array.shape[1] != len(distributions):
            continue
        for layer, distribution in enumerate(distributions):
            add(f"{name}[{layer}]", distribution.z(array[:, layer]))
    if not all_z:
        return Divergence(0.0, [])
    return Divergence(min(1.0, float(np.concatenate(all_z).mean()) / 6.0), anomalies)


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
