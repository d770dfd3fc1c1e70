"""Calibration against known-healthy runs: a profile of a model's per-step metrics and the divergence
of a new run from it (docs/signals.md, "Calibration")."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._util import as_array, finite

PROFILE_VERSION = 1
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


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
