"""Risk features read from the middle layer's projected states (docs/signals.md, "Representation
features"): how spread out the states of a generation are, and what a per-model linear probe makes
of their mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..projection import PROJECTION_DIMS, PROJECTION_SEED, representation_layer

#: Floor added to each eigenvalue before its logarithm (the states are O(1) after projection).
SPREAD_FLOOR = 1e-6


def state_spread(projected: np.ndarray | None) -> float:
    """The hidden-state score of LLM-Check (Sriramanan et al., NeurIPS 2024) on the generated steps:
    the mean log-eigenvalue of the covariance of the centred states, ``mean_i log(σ_i² / n)`` over
    the nonzero singular values ``σ_i`` of the centred ``[n, dims]`` states (at most ``n − 1`` of
    them). Low: the states move little from step to step, high: they spread in many directions.
    NaN with fewer than two finite steps.

    >>> round(state_spread(np.array([[1.0, 0.0], [-1.0, 0.0]])), 3)
    0.0
    >>> math.isnan(state_spread(np.zeros((1, 4))))
    True
    """
    if projected is None:
        return float("nan")
    states = np.asarray(projected, dtype=np.float64)
    if states.ndim != 2:
        return float("nan")
    states = states[np.isfinite(states).all(axis=1)]
    n = states.shape[0]
    if n < 2:
        return float("nan")
    centred = states - states.mean(axis=0)
    # σ_i² / n are the eigenvalues of the [dims, dims] covariance: one small symmetric solve,
    # whatever the number of steps
    eigen = np.linalg.eigvalsh(centred.T @ centred / n)[::-1][: min(n - 1, states.shape[1])]
    return float(np.mean(np.log(np.clip(eigen, 0.0, None) + SPREAD_FLOOR)))


def state_mean(projected: np.ndarray | None, dims: int) -> np.ndarray:
    """The mean projected state over the finite steps (``dims`` NaNs when there is none)."""
    if projected is None:
        return np.full(dims, np.nan)
    states = np.asarray(projected, dtype=np.float64)
    if states.ndim != 2 or states.shape[1] != dims:
        return np.full(dims, np.nan)
    states = states[np.isfinite(states).all(axis=1)]
    return states.mean(axis=0) if states.size else np.full(dims, np.nan)


def probe_problem(
    mean: Sequence[float], scale: Sequence[float], weights: Sequence[float], intercept: float
) -> str | None:
    """What is wrong with a probe's numbers (``None``: nothing): lengths that differ, a number that
    is not finite, a scale that is not positive.

    >>> probe_problem([0.0], [1.0], [0.5], 0.1) is None, probe_problem([0.0], [0.0], [0.5], 0.1)
    (True, 'every number must be finite and every scale positive')
    """
    if not len(mean) == len(scale) == len(weights):
        return "mean, scale and weights must have the same length"
    if not all(math.isfinite(v) for v in (*mean, *scale, *weights, intercept)) or min(scale, default=1) <= 0:
        return "every number must be finite and every scale positive"
    return None


@dataclass(frozen=True)
class StateProbe:
    """A linear probe on the mean projected middle-layer state: ``w · (m − mean) / scale + b``, the
    log-odds of a failed generation that it reads from the states alone.

    It is fitted for one model and applies only where the hidden size and layer count match it and
    the projection (seed, width, projected layer) is the one it was fitted on; elsewhere the feature
    is undefined, which the risk model reads as average. Shape is all it can check: another model of
    the same type and shape would pass, so refit the probe per model.
    """

    hidden_size: int
    layers: int
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    seed: int = PROJECTION_SEED
    layer: int = -1  # the projected layer; -1: the one representation_layer(layers) picks

    @property
    def dims(self) -> int:
        return len(self.weights)

    def applies(self, hidden_size: int, layers: int) -> bool:
        """Whether the probe was fitted on a model of this shape, with today's projection."""
        layer = self.layer if self.layer >= 0 else representation_layer(self.layers)
        return (
            self.hidden_size == hidden_size
            and self.layers == layers
            and self.seed == PROJECTION_SEED
            and self.dims == PROJECTION_DIMS
            and layer == representation_layer(layers)
        )

    def logit(self, means: np.ndarray) -> np.ndarray | float:
        """The probe's log-odds for one ``[dims]`` mean state or ``[n, dims]`` of them (NaN where a
        mean is undefined)."""
        x = np.asarray(means, dtype=np.float64)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        out = z @ np.asarray(self.weights) + self.intercept
        if x.ndim == 1:
            return float(out) if np.isfinite(x).all() else math.nan
        return np.where(np.isfinite(x).all(axis=1), out, np.nan)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StateProbe:
        probe = cls(
            int(data["hidden_size"]),
            int(data["layers"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["scale"]),
            tuple(float(v) for v in data["weights"]),
            float(data["intercept"]),
            int(data["seed"]),
            int(data["layer"]),
        )
        problem = probe_problem(probe.mean, probe.scale, probe.weights, probe.intercept)
        if problem:
            raise ValueError(f"risk_model.probe: {problem}")
        return probe

    def to_mapping(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "layers": self.layers,
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "intercept": round(float(self.intercept), 6),
            "seed": self.seed,
            "layer": self.layer if self.layer >= 0 else representation_layer(self.layers),
        }
