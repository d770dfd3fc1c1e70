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
        ``(packed, probs)``: ``packed`` is ``[batch, len(LOGIT_FIELDS)]`` float32 holding the
        entropy in bits (−Σ p log2 p over the full vocabulary), the top-1 − top-2 probability
        margin, the mass of the 10 most likely tokens, the 5 largest probabilities and their token
        ids (exact as float32 below 2**24); ``probs`` is the float32 softmax, kept by the caller for
        one step to score the token that is chosen next. The entropy is never below 0 (float
        rounding is clamped away); NaN logits give NaN metrics.
    """
    # H = log Σ exp(x) − Σ p·x needs no logarithm per token (the costly part of −Σ p log p); -inf
    # logits are clamped so that 0 · -inf does not turn into NaN. NaN logits still give NaN.
    x = logits.float().clamp(min=-1e30)
    log_normalizer = torch.logsumexp(x, dim=-1, keepdim=True)
    probs = torch.exp(x - log_normalizer)
    # Rounding makes a near-certain step's entropy come out a hair below 0 (histograms reject
    # negative samples); clamp keeps NaN as NaN.
    entropy = ((log_normalizer.squeeze(-1) - (probs * x).sum(dim=-1)) / _LN2).clamp(min=0.0)
    k = min(TOP_K_MASS, probs.shape[-1])
    top_logits, top_ids = torch.topk(x, k, dim=-1)
    top_values = torch.exp(top_logits - log_normalizer)
    if k < TOP_K_MASS:
        pad = TOP_K_MASS - k
        top_values = torch.nn.functional.pad(top_values, (0, pad))
        top_ids = torch.nn.functional.pad(top_ids, (0, pad), value=-1)
    packed = torch.cat(
        (
            entropy[:, None],
            (top_values[:, 0] - top_values[:, 1])[:, None],
            top_values.sum(dim=-1, keepdim=True),
            top_values[:, :TOP_N_PROBS],
            top_ids[:, :TOP_N_PROBS].to(torch.float32),
        ),
        dim=-1,
    )
    return packed, probs


def chosen_token_surprisal(probs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Surprisal in bits, −log2 p(chosen token), for each row.

    Args:
        probs: ``[batch, vocab]`` probabilities of the step that chose the tokens.
        token_ids: ``[batch]`` the tokens that were chosen.
    """
    ids = token_ids.to(device=probs.device, dtype=torch.long).clamp(0, probs.shape[-1] - 1)
    return -torch.log2(probs.gather(-1, ids[:, None]).squeeze(-1))
