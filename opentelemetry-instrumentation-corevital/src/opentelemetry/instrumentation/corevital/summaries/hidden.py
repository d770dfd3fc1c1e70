"""Per-layer hidden-state summaries at the last position (docs/signals.md, "Hidden states")."""

from __future__ import annotations

from collections.abc import Sequence

import torch

CLAMP = 1e6

#: Per-layer columns of :func:`summarize_hidden`, in order.
HIDDEN_LAYER_FIELDS: tuple[str, ...] = (
    "l2_norm",
    "mean",
    "std",
    "max_abs",
    "nan_count",
    "inf_count",
    "clipped_count",
)


def last_position_layers(hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack the last position of every layer's output, embeddings excluded.

    Args:
        hidden_states: the model's ``hidden_states`` tuple: the embedding output followed by one
            ``[batch, seq, hidden]`` tensor per layer.

    Returns:
        ``[layers, batch, hidden]``.
    """
    layers = hidden_states[1:] if len(hidden_states) > 1 else hidden_states
    if layers[0].shape[1] == 1:  # a decoding step: one position, so one stack (no slice per layer)
        return torch.stack(list(layers)).squeeze(2)
    return torch.stack([layer[:, -1] for layer in layers])


def summarize_hidden(layers: torch.Tensor) -> torch.Tensor:
    """Statistics of every layer's last-position vector, in one fused computation.

    Values are clamped to ±1e6 (NaN counted, then treated as 0) before the statistics, so one
    exploding value does not turn every statistic into Inf; ``clipped_count`` says how many were.

    Args:
        layers: ``[layers, batch, hidden]`` as from :func:`last_position_layers`.

    Returns:
        ``[batch, layers, len(HIDDEN_LAYER_FIELDS)]`` float32.
    """
    x = layers.float()
    if x.device.type == "cpu":
        # The common case, checked with one reduction on the CPU (on an accelerator the check would
        # sync): every value finite and inside the clamp (NaN propagates through max), so nothing to
        # count and nothing to clean.
        max_abs = x.abs().amax(dim=-1)
        if float(max_abs.max()) <= CLAMP:
            std, mean = torch.std_mean(x, dim=-1, correction=0)
            zeros = _zeros(max_abs)
            stats = torch.stack(
                (torch.linalg.vector_norm(x, dim=-1), mean, std, max_abs, zeros, zeros, zeros), dim=-1
            )
            return stats.transpose(0, 1)
    nan_count = torch.isnan(x).sum(dim=-1)
    inf_count = torch.isinf(x).sum(dim=-1)
    clipped_count = (x.abs() > CLAMP).sum(dim=-1) - inf_count
    clean = torch.nan_to_num(x, nan=0.0, posinf=CLAMP, neginf=-CLAMP).clamp(-CLAMP, CLAMP)
    std, mean = torch.std_mean(clean, dim=-1, correction=0)
    stats = torch.stack(
        (
            torch.linalg.vector_norm(clean, dim=-1),
            mean,
            std,
            clean.abs().amax(dim=-1),
            nan_count.float(),
            inf_count.float(),
            clipped_count.float(),
        ),
        dim=-1,
    )
    return stats.transpose(0, 1)


_ZEROS: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}


def _zeros(like: torch.Tensor) -> torch.Tensor:
    """A cached read-only zeros tensor shaped like ``like`` (the counts of a clean step)."""
    key = (tuple(like.shape), like.device)
    zeros = _ZEROS.get(key)
    if zeros is None:
        if len(_ZEROS) > 64:
            _ZEROS.clear()
        zeros = _ZEROS[key] = torch.zeros_like(like)
    return zeros
