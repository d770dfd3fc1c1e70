"""Fingerprint (25 numbers, version 2) and keyed prompt hash (docs/signals.md, "Fingerprint")."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

import numpy as np

from . import flags as fl
from ._util import finite, slope

FINGERPRINT_VERSION = 2
FINGERPRINT_LENGTH = 25


def _stats(values: np.ndarray) -> tuple[float, float]:
    return (float(values.mean()), float(values.std())) if values.size else (0.0, 0.0)


def fingerprint(
    entropy: np.ndarray | Iterable[float],
    margin: np.ndarray | Iterable[float],
    surprisal: np.ndarray | Iterable[float],
    topk_mass: np.ndarray | Iterable[float],
    risk_score: float,
    health_flags: fl.HealthFlags,
) -> list[float]:
    """The 25-number summary of a run, comparable across runs of one model.

    0–4 entropy mean, std, min, max, slope; 5–7 margin mean, std, slope; 8–10 surprisal mean,
    std, slope; 11–12 top-10 mass mean, std; 13 risk; 14 share of high-entropy steps; 15–19 NaN,
    Inf, attention collapse, repetition, mid-layer anomaly (0/1); 20 Pearson r(entropy, margin);
    21 entropy coefficient of variation; 22–23 mean entropy of the first / last quarter; 24 reserved.
    Undefined values are 0.
    """
    e, m, s, k = finite(entropy), finite(margin), finite(surprisal), finite(topk_mass)
    e_mean, e_std = _stats(e)
    m_mean, m_std = _stats(m)
    s_mean, s_std = _stats(s)
    k_mean, k_std = _stats(k)
    steps = max(e.size, 1)
    pearson = 0.0
    x, y = _paired(entropy, margin)
    if x.size >= 2 and x.std() > 0 and y.std() > 0:
        pearson = float(np.corrcoef(x, y)[0, 1])
    quarter = max(1, e.size // 4)
    vector = [
        e_mean, e_std, float(e.min()) if e.size else 0.0, float(e.max()) if e.size else 0.0, slope(e),
        m_mean, m_std, slope(m),
        s_mean, s_std, slope(s),
        k_mean, k_std,
        float(risk_score),
        health_flags.high_entropy_steps / steps,
        *(1.0 if name in health_flags else 0.0
          for name in (fl.NAN, fl.INF, fl.ATTENTION_COLLAPSE, fl.REPETITION_LOOP, fl.MID_LAYER_ANOMALY)),
        pearson,
        e_std / e_mean if e_mean > 0 else 0.0,
        float(e[:quarter].mean()) if e.size else 0.0,
        float(e[-quarter:].mean()) if e.size else 0.0,
        0.0,
    ]  # fmt: skip
    return [round(v, 6) if np.isfinite(v) else 0.0 for v in vector]


def _paired(
    a: np.ndarray | Iterable[float], b: np.ndarray | Iterable[float]
) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    n = min(x.size, y.size)
    x, y = x[:n], y[:n]
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def prompt_hash(prompt_token_ids: Sequence[int] | Iterable[int], model_id: str, key: bytes) -> str:
    """Keyed hash (HMAC-SHA-256) identifying a prompt without exporting it.

    Computed over the prompt's token ids (padding removed) and the model id: ``generate`` sees
    tokens, not text. The key is a per-deployment secret (``OTEL_INSTRUMENTATION_COREVITAL_PROMPT_HASH_KEY``)
    or, without one, random per process: the same prompt gets the same hash wherever the key is the
    same, and nobody without the key can confirm a guessed prompt by hashing it (docs/privacy.md).

    >>> key = b"0123456789abcdef"
    >>> prompt_hash([1, 2, 3], "m", key) == prompt_hash([1, 2, 3], "m", key) != prompt_hash([1, 2], "m", key)
    True
    >>> prompt_hash([1, 2, 3], "m", key) != prompt_hash([1, 2, 3], "m", b"another key, 16+")
    True
    """
    text = " ".join(str(int(t)) for t in prompt_token_ids) + "\n" + model_id
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
