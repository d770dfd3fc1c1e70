"""Layer blame: which layers look responsible, and why (docs/signals.md, "Layer blame")."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._util import nanmean, nanstd

NAN_OR_INF = "nan_or_inf"
MID_LAYER_ANOMALY = "mid_layer_anomaly"
ATTENTION_COLLAPSE = "attention_collapse"
L2_OUTLIER = "l2_norm_outlier"
L2_UNSTABLE = "l2_norm_unstable"

_SEVERITY = {
    NAN_OR_INF: 1.0,
    MID_LAYER_ANOMALY: 0.7,
    L2_OUTLIER: 0.5,
    ATTENTION_COLLAPSE: 0.4,
    L2_UNSTABLE: 0.3,
}


@dataclass
class LayerBlame:
    """One blamed layer: its index, the reasons, and the largest severity among them."""

    layer: int
    reasons: list[str] = field(default_factory=list)

    @property
    def severity(self) -> float:
        return max((_SEVERITY[r] for r in self.reasons), default=0.0)


def layer_blame(
    l2_norm: np.ndarray | None = None,
    nonfinite: np.ndarray | None = None,
    collapsed_heads: np.ndarray | None = None,
    mid_layer_anomalies: np.ndarray | None = None,
    z_threshold: float = 2.5,
    cv_threshold: float = 0.5,
) -> list[LayerBlame]:
    """Blame layers from per-step, per-layer statistics (each ``[steps, layers]``).

    - NaN/Inf anywhere in the layer: severity 1.0;
    - a middle layer marked by the mid-layer anomaly detector (``mid_layer_anomalies``, booleans)
      in at least a quarter of the steps: 0.7 (an addition to the original tool: the detector already
      knows which layers exploded, and a z-score cannot single them out when several did);
    - collapsed heads beyond the layer's permanent ones (structural "sink" heads that are collapsed
      at every step are not blamed) in more than half of the steps: 0.4;
    - the layer's mean L2 norm is a z-score outlier (> ``z_threshold``) among layers: 0.5;
    - the layer's L2 coefficient of variation across the decoding steps (the prefill, which
      summarises the prompt, excluded) above ``cv_threshold``: 0.3.

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
    if l2_norm is not None and np.asarray(l2_norm).size:
        norms = np.asarray(l2_norm, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            layer_means = nanmean(norms, axis=0)  # all-NaN layers give NaN
            spread = float(nanstd(layer_means))
            if np.isfinite(spread) and spread > 0:
                blame(np.abs(layer_means - float(nanmean(layer_means))) / spread > z_threshold, L2_OUTLIER)
            decoding = norms[1:]
            if decoding.shape[0] >= 2:
                cv = nanstd(decoding, axis=0) / np.abs(nanmean(decoding, axis=0))
                blame(np.nan_to_num(cv, nan=0.0) > cv_threshold, L2_UNSTABLE)
    blamed = [LayerBlame(layer, sorted(set(r), key=list(_SEVERITY).index)) for layer, r in reasons.items()]
    return sorted(blamed, key=lambda b: (-b.severity, b.layer))
