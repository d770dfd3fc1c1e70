"""Layer blame: which layers look responsible, and why (docs/signals.md, "Layer blame").

A layer is blamed when it departs from *its own* normal — NaN/Inf, an explosion the mid-layer
detector marked, collapsed heads beyond its permanent ones, or an L2 norm outside the range the
model's healthy baseline gives that layer — never for differing from the other layers (the last
layer's norm always does: a property of the architecture, not of a generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .baseline import Baseline, out_of_range

# The reasons are values inside ``corevital.layer_blame.details`` (a JSON string, documented with it
# in the registry), not attribute values of their own.
NAN_OR_INF = "nan_or_inf"
MID_LAYER_ANOMALY = "mid_layer_anomaly"
ATTENTION_COLLAPSE = "attention_collapse"
L2_OUT_OF_RANGE = "l2_norm_out_of_range"

#: Every blame reason with its severity, most severe first.
SEVERITY = {
    NAN_OR_INF: 1.0,
    MID_LAYER_ANOMALY: 0.7,
    L2_OUT_OF_RANGE: 0.5,
    ATTENTION_COLLAPSE: 0.4,
}
REASONS: tuple[str, ...] = tuple(SEVERITY)


@dataclass
class LayerBlame:
    """One blamed layer: its index, the reasons, and the largest severity among them."""

    layer: int
    reasons: list[str] = field(default_factory=list)

    @property
    def severity(self) -> float:
        return max((SEVERITY[r] for r in self.reasons), default=0.0)


def layer_blame(
    l2_norm: np.ndarray | None = None,
    nonfinite: np.ndarray | None = None,
    collapsed_heads: np.ndarray | None = None,
    mid_layer_anomalies: np.ndarray | None = None,
    baseline: Baseline | None = None,
) -> list[LayerBlame]:
    """Blame layers from per-step, per-layer statistics (each ``[steps, layers]``).

    - NaN/Inf anywhere in the layer: severity 1.0;
    - a middle layer marked by the mid-layer anomaly detector (``mid_layer_anomalies``, booleans)
      in at least a quarter of the steps: 0.7;
    - with a ``baseline`` of this model: the layer's L2-norm level outside its own healthy range
      (``l2_norm_out_of_range``, 0.5) at the baseline's false-alarm budget
      (``signals.baseline.out_of_range``); without one, it is not judged;
    - collapsed heads beyond the layer's permanent ones (structural "sink" heads that are collapsed
      at every step are not blamed) in more than half of the steps: 0.4.

    Returns the blamed layers, most severe first.
    """
    reasons: dict[int, list[str]] = {}

    def blame(layers: np.ndarray, reason: str) -> None:
        for layer in np.flatnonzero(layers):
            reasons.setdefault(int(layer), []).append(reason)

    if nonfinite is not None and np.asarray(nonfinite).size:
        blame(np.nansum(np.asarray(nonfinite, dtype=np.float64), axis=0) > 0, NAN_OR_INF)
    if mid_layer_anomalies is not None and np.asarray(mid_layer_anomalies).size:
        blame(np.asarray(mid_layer_anomalies, dtype=bool).mean(axis=0) >= 0.25, MID_LAYER_ANOMALY)
    if collapsed_heads is not None and np.asarray(collapsed_heads).size:
        heads = np.nan_to_num(np.asarray(collapsed_heads, dtype=np.float64), nan=0.0)
        beyond_permanent = heads > heads.min(axis=0, keepdims=True)
        blame(beyond_permanent.mean(axis=0) > 0.5, ATTENTION_COLLAPSE)
    if baseline is not None and l2_norm is not None and np.asarray(l2_norm).size:
        blame(out_of_range(np.asarray(l2_norm, dtype=np.float64), baseline), L2_OUT_OF_RANGE)
    blamed = [LayerBlame(layer, sorted(set(r), key=REASONS.index)) for layer, r in reasons.items()]
    return sorted(blamed, key=lambda b: (-b.severity, b.layer))


def _span(layers: Sequence[int]) -> str:
    """Layer indices with consecutive runs of three or more as ranges.

    >>> _span([15, 16, 17, 18, 3, 5, 6])
    '3, 5, 6, 15-18'
    """
    ordered = sorted(set(layers))
    parts: list[str] = []
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        if end - start >= 2:
            parts.append(f"{ordered[start]}-{ordered[end]}")
        else:
            parts.extend(str(v) for v in ordered[start : end + 1])
        start = end + 1
    return ", ".join(parts)


def describe(blamed: Sequence[LayerBlame]) -> str:
    """The blamed layers grouped by their reasons, most severe group first — the one wording the
    narrative and the console view share, so that both name the same layers for the same reasons.

    >>> blamed = [LayerBlame(15, ["nan_or_inf"]), LayerBlame(16, ["nan_or_inf"])]
    >>> describe([*blamed, LayerBlame(3, ["l2_norm_out_of_range"])])
    '15, 16 (nan_or_inf); 3 (l2_norm_out_of_range)'
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for b in blamed:
        groups.setdefault(tuple(b.reasons), []).append(b.layer)
    return "; ".join(f"{_span(layers)} ({', '.join(reasons)})" for reasons, layers in groups.items())
