"""Per-step logit metrics on the raw next-token logits (SIGNALS §1)."""

from __future__ import annotations

import math

import torch

TOP_K_MASS = 10
TOP_N_PROBS = 5
_LN2 = math.log(2.0)

#: Columns of :func:`summarize_logits`'s packed output, in order.
LOGIT_FIELDS: tuple[str, ...] = (
    "entropy",
    "margin",
    "topk_mass",
    *(f"top{i + 1}_prob" for i in range(TOP_N_PROBS)),
    *(f"top{i + 1}_id" for i in range(TOP_N_PROBS)),
)


def summarize_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summarise one step's raw logits.

    Args:
        logits: ``[batch, vocab]`` next-token logits, before any temperature, top-k or top-p.

    Returns:
        ``(packed, log_probs)``: ``packed`` is ``[batch, len(LOGIT_FIELDS)]`` float32 holding the
        entropy in bits (−Σ p log2 p over the full vocabulary), the top-1 − top-2 probability
        margin, the mass of the 10 most likely tokens, the 5 largest probabilities and their token
        ids (exact as float32 below 2**24); ``log_probs`` is the float32 log-softmax, kept by the
        caller for one step to score the token that is chosen next. NaN logits give NaN metrics.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    probs = log_probs.exp()
    # 0 * log 0 is 0; a NaN probability stays NaN so that broken logits are visible.
    plogp = torch.where(probs == 0, torch.zeros_like(probs), probs * log_probs)
    entropy = -plogp.sum(dim=-1) / _LN2
    k = min(TOP_K_MASS, probs.shape[-1])
    top_values, top_ids = torch.topk(probs, k, dim=-1)
    if k < TOP_K_MASS:
        pad = TOP_K_MASS - k
        top_values = torch.nn.functional.pad(top_values, (0, pad))
        top_ids = torch.nn.functional.pad(top_ids, (0, pad), value=-1)
    margin = top_values[:, 0] - top_values[:, 1]
    mass = top_values.sum(dim=-1)
    packed = torch.cat(
        (
            torch.stack((entropy, margin, mass), dim=-1),
            top_values[:, :TOP_N_PROBS],
            top_ids[:, :TOP_N_PROBS].to(torch.float32),
        ),
        dim=-1,
    )
    return packed, log_probs


def chosen_token_surprisal(log_probs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Surprisal in bits, −log2 p(chosen token), for each row.

    Args:
        log_probs: ``[batch, vocab]`` natural-log probabilities of the step that chose the tokens.
        token_ids: ``[batch]`` the tokens that were chosen.
    """
    ids = token_ids.to(device=log_probs.device, dtype=torch.long).clamp(0, log_probs.shape[-1] - 1)
    return -log_probs.gather(-1, ids[:, None]).squeeze(-1) / _LN2
