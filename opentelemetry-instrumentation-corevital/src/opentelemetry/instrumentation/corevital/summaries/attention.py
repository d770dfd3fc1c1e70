"""Per-layer attention summaries over the last query row (docs/signals.md, "Attention")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: Per-layer columns of :func:`summarize_attention`, in order. Entropies are in nats.
ATTENTION_LAYER_FIELDS: tuple[str, ...] = (
    "entropy_mean",
    "entropy_min",
    "entropy_max",
    "entropy_normalized_mean",
    "concentration_mean",
    "collapsed_heads",
    "focused_heads",
    "basin_score",
)


def summarize_attention(
    attentions: Sequence[torch.Tensor | None],
    key_lengths: torch.Tensor | None = None,
    collapsed_threshold: float = 0.03,
    focused_threshold: float = 0.9,
) -> torch.Tensor:
    """Summarise every layer's attention for the newest query position.

    Args:
        attentions: one ``[batch, heads, queries, keys]`` tensor per layer (``None`` for a layer
            that returned no weights: its row is NaN).
        key_lengths: ``[batch]`` number of real (unpadded) keys per row, for the normalisation
            by ln K; defaults to the full key length.
        collapsed_threshold: a head is collapsed when its normalised entropy is below this.
        focused_threshold: a head is focused when its largest weight is above this.

    Returns:
        ``[batch, layers, len(ATTENTION_LAYER_FIELDS)]`` float32: per layer the mean / min / max
        head entropy, the mean normalised entropy (entropy / ln K), the mean concentration (max
        weight), the number of collapsed and focused heads, and the mean basin score (attention
        mass on the middle third of the keys ÷ mass on the outer thirds; NaN below 3 keys).
    """
    present = [a for a in attentions if a is not None]
    if not present:
        raise ValueError("the model returned no attention weights")
    if len(present) != len(attentions):
        template = present[0][:, :, -1]
        rows = [a[:, :, -1] if a is not None else torch.full_like(template, float("nan")) for a in attentions]
    else:
        rows = [a[:, :, -1] for a in present]
    weights = torch.stack(rows).float()  # [layers, batch, heads, keys]
    entropy = -torch.special.xlogy(weights, weights).sum(dim=-1)  # [layers, batch, heads]
    if key_lengths is None:
        log_k = torch.full(weights.shape[1:2], math.log(weights.shape[-1]), device=weights.device)
    else:
        log_k = key_lengths.to(device=weights.device, dtype=torch.float32).clamp(min=1).log()
    log_k = log_k[None, :, None]
    normalized = torch.where(log_k > 0, entropy / log_k.clamp(min=1e-12), torch.zeros_like(entropy))
    concentration = weights.amax(dim=-1)
    # A layer without weights is NaN throughout; counting its heads would report a false 0.
    missing = torch.isnan(entropy).all(dim=-1)
    nan = torch.tensor(float("nan"), device=weights.device)
    collapsed = torch.where(missing, nan, (normalized < collapsed_threshold).sum(dim=-1).float())
    focused = torch.where(missing, nan, (concentration > focused_threshold).sum(dim=-1).float())
    keys = weights.shape[-1]
    if keys >= 3:
        middle = weights[..., keys // 3 : 2 * keys // 3].sum(dim=-1)
        basin = (middle / (weights.sum(dim=-1) - middle).clamp(min=1e-12)).mean(dim=-1)
    else:
        basin = torch.full(entropy.shape[:2], float("nan"), device=weights.device)
    stats = torch.stack(
        (
            entropy.mean(dim=-1),
            entropy.amin(dim=-1),
            entropy.amax(dim=-1),
            normalized.mean(dim=-1),
            concentration.mean(dim=-1),
            collapsed,
            focused,
            basin,
        ),
        dim=-1,
    )
    return stats.transpose(0, 1)
