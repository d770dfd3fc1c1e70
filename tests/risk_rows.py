"""Synthetic labelled risk-feature rows for the risk-model tests; not a test."""

from __future__ import annotations

import numpy as np

from opentelemetry.instrumentation.corevital.signals.risk import RISK_FEATURES


def labelled(seed: int = 0, n: int = 400, rate: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Short answers whose first feature (mean entropy) is higher when they failed."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(float)
    x = rng.normal(size=(n, len(RISK_FEATURES)))
    x[:, 0] += 1.5 * y
    x[:, RISK_FEATURES.index("output_tokens_log")] = np.log1p(10)
    x[:, RISK_FEATURES.index("hit_token_limit")] = 0.0
    return x, y
