"""Per-step logit metrics on the raw next-token logits (docs/signals.md, "Per-step logit metrics").

The work is split where it is cheapest: on the model's device, at every step, only what needs the
whole vocabulary (:func:`summarize_logits`: the expected log-probability and the 10 largest
log-probabilities, a handful of tensor operations); on the host, once per call and vectorised over
every step, what follows from those few numbers (:func:`logit_metrics`: entropy, margin, top-k mass,
top probabilities) and the surprisal of the chosen tokens (:func:`surprisal_bits`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

TOP_K_MASS = 10
TOP_N_PROBS = 5
_LN2 = math.log(2.0)

#: Columns of :func:`summarize_logits`'s packed output, in order.
LOGIT_FIELDS: tuple[str, ...] = (
    "expected_log_prob",
    *(f"top{i + 1}_log_prob" for i in range(TOP_K_MASS)),
    *(f"top{i + 1}_id" for i in range(TOP_N_PROBS)),
)


def summarize_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summarise one step's raw logits, on their device.

    Args:
        logits: ``[batch, vocab]`` next-token logits, before any temperature, top-k or top-p.

    Returns:
        ``(packed, probs)``: ``packed`` is ``[batch, len(LOGIT_FIELDS)]`` float32 holding Σ p log p
        (nats), the 10 largest log-probabilities (padded with -inf below 10 tokens) and the token ids
        of the 5 largest (exact as float32 below 2**24; -1 for padding); ``probs`` is the float32
        softmax, kept by the caller for one step to look up the token chosen next
        (:func:`chosen_probability`). NaN logits give NaN.
    """
    # -inf logits are clamped so that 0 · log 0 is 0 · (-huge) = 0, not NaN; NaN logits stay NaN.
    log_probs = torch.log_softmax(logits.float().clamp(min=-1e30), dim=-1)
    probs = log_probs.exp()
    expected = torch.linalg.vecdot(probs, log_probs)[:, None]
    k = min(TOP_K_MASS, log_probs.shape[-1])
    top_log_probs, top_ids = torch.topk(log_probs, k, dim=-1)
    if k < TOP_K_MASS:
        top_log_probs = torch.nn.functional.pad(top_log_probs, (0, TOP_K_MASS - k), value=float("-inf"))
        top_ids = torch.nn.functional.pad(top_ids, (0, TOP_N_PROBS), value=-1)
    packed = torch.cat((expected, top_log_probs, top_ids[:, :TOP_N_PROBS].float()), dim=-1)
    return packed, probs


def chosen_probability(probs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """The probability each row's chosen token had (``[batch]``), looked up in the previous step's
    ``probs`` (token ids are ``generate``'s own, so within the vocabulary)."""
    return probs.gather(-1, token_ids.view(-1, 1)).view(-1)


def logit_metrics(packed: np.ndarray) -> dict[str, np.ndarray]:
    """Every logit metric from packed steps (``[..., len(LOGIT_FIELDS)]`` as from
    :func:`summarize_logits`), vectorised.

    Returns ``entropy`` (bits, −Σ p log2 p, never below 0: float rounding can give −1e-7),
    ``margin`` (p1 − p2), ``topk_mass`` (sum of the 10 largest probabilities),
    ``top_probs`` (``[..., 5]``) and ``top_ids`` (``[..., 5]``, int64).

    >>> row = np.array([[np.log(0.5), np.log(0.5), np.log(0.5)] + [-np.inf] * 8 + [7, 3, -1, -1, -1]])
    >>> {k: v.round(3).tolist() for k, v in logit_metrics(row).items() if k != "top_probs"}
    {'entropy': [1.0], 'margin': [0.0], 'topk_mass': [1.0], 'top_ids': [[7, 3, -1, -1, -1]]}
    """
    data = np.asarray(packed, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        entropy = np.maximum(-data[..., 0] / _LN2, 0.0)
        top = np.exp(data[..., 1 : 1 + TOP_K_MASS])
    return {
        "entropy": entropy,
        "margin": top[..., 0] - top[..., 1],
        "topk_mass": top.sum(axis=-1),
        "top_probs": top[..., :TOP_N_PROBS],
        "top_ids": data[..., 1 + TOP_K_MASS :].astype(np.int64),
    }


def surprisal_bits(probability: np.ndarray) -> np.ndarray:
    """−log2 p of the chosen tokens' probabilities (NaN stays NaN).

    >>> surprisal_bits(np.array([0.5, 1.0, np.nan])).tolist()
    [1.0, 0.0, nan]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.0 - np.log2(np.asarray(probability, dtype=np.float64))
