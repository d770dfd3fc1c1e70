"""Per-layer attention summaries over the last query row (docs/signals.md, "Attention").

Two steps, both on the tensors' own device:

- :func:`last_query_weights` recomputes one layer's attention weights for the *last query position
  only* from what transformers hands its attention function (post-RoPE query, the full cached keys,
  the mask, the scaling): ``softmax(q·kᵀ·scaling + mask)``. It never touches the model's own kernel
  and costs one ``[heads, keys]`` row per layer (never a ``[queries, keys]`` matrix).
- :func:`summarize_attention_rows` reduces the rows of every layer of a step to a few numbers per
  layer, in one vectorised computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: Per-layer columns of :func:`summarize_attention_rows`, in order. Entropies are in nats.
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


def last_query_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scaling: float | None = None,
    position_bias: torch.Tensor | None = None,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    sliding_window: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention weights of the last query position, as an eager kernel computes them.

    Args:
        query: ``[batch, heads, queries, head_dim]`` (post-RoPE).
        key: ``[batch, kv_heads, keys, head_dim]``; grouped-query heads are shared by
            ``heads // kv_heads`` consecutive query heads, as transformers' ``repeat_kv`` does.
        mask: ``None`` (every key attended: the last query is the newest position); a 4-D
            ``[batch, 1 | heads, queries, keys']`` additive float mask or boolean mask (``True``:
            attend); or a 2-D ``[batch, keys']`` padding mask (non-zero: attend). Only its last
            query row and its first ``keys`` columns are read.
        scaling: the softmax scale; ``head_dim ** -0.5`` when ``None``.
        position_bias: an additive ``[batch | 1, heads, queries, keys]`` bias (T5).
        softcap: logits are capped as ``tanh(x / softcap) · softcap`` (Gemma 2).
        sinks: attention-sink logits, ``[heads]`` or ``[batch, heads, queries, 1]``, that take part
            in the softmax and are then dropped (the weights of a row then sum to less than 1).
        sliding_window: with no 4-D mask, only the last ``sliding_window`` keys are attended.

    Returns:
        ``(weights, attended)``: ``[batch, heads, keys]`` float32 weights and ``[batch, keys]``
        booleans, the keys the last query may attend.

    >>> q = torch.zeros(1, 2, 3, 4); k = torch.zeros(1, 1, 5, 4)
    >>> weights, attended = last_query_weights(q, k, torch.tensor([[0, 1, 1, 1, 1]]))
    >>> weights[0, 0].tolist(), attended.sum(dim=-1).tolist()
    ([0.0, 0.25, 0.25, 0.25, 0.25], [4])
    """
    batch, heads, _, head_dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[-2]
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads cannot share {kv_heads} key heads")
    scale = head_dim**-0.5 if scaling is None else float(scaling)
    # In the keys' own dtype, as the eager kernel multiplies (no float32 copy of the whole cache).
    last = query[:, :, -1, :].to(key.dtype).reshape(batch, kv_heads, heads // kv_heads, head_dim)
    logits = torch.matmul(last, key.transpose(-1, -2)).float().reshape(batch, heads, keys) * scale
    if position_bias is not None:
        logits = logits + position_bias[:, :, -1, :keys].float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    attend = _attended_keys(mask, batch, keys, logits.device, sliding_window)
    if mask is not None and mask.dim() == 4 and mask.dtype != torch.bool:
        logits = logits + _last_row(mask, keys).float()[:, None, :]
    logits = logits.masked_fill(~attend[:, None, :], float("-inf"))
    if sinks is not None:
        sink = sinks.float()
        sink = sink.reshape(1, heads, 1).expand(batch, heads, 1) if sink.dim() == 1 else sink[..., -1, :]
        weights = torch.softmax(torch.cat((logits, sink.to(logits.device)), dim=-1), dim=-1)[..., :keys]
    else:
        weights = torch.softmax(logits, dim=-1)
    return torch.nan_to_num(weights, nan=0.0), attend


def _last_row(mask: torch.Tensor, keys: int) -> torch.Tensor:
    """``[batch, keys]`` last query row of a 4-D mask (its first head), padded to ``keys``."""
    row = mask[:, 0, -1, :keys]
    if row.shape[-1] < keys:  # a shorter mask leaves the newest keys attended
        fill = True if row.dtype == torch.bool else 0.0
        row = torch.nn.functional.pad(row, (0, keys - row.shape[-1]), value=fill)
    return row


def _attended_keys(
    mask: torch.Tensor | None, batch: int, keys: int, device: torch.device, sliding_window: int | None
) -> torch.Tensor:
    """``[batch, keys]`` booleans: which keys the last query position may attend."""
    if mask is None or mask.dim() == 2:
        attend = torch.ones(batch, keys, dtype=torch.bool, device=device)
        if mask is not None and mask.shape[-1] >= keys:  # the newest keys (a sliding-window cache)
            attend = mask[:, -keys:].to(device) != 0
        elif mask is not None:  # a static cache: the mask covers the filled slots, the rest is empty
            attend[:, : mask.shape[-1]] = mask.to(device) != 0
            attend[:, mask.shape[-1] :] = False
        if sliding_window is not None and 0 < sliding_window < keys:
            attend[:, : keys - sliding_window] = False
        return attend
    if mask.dim() != 4:
        raise ValueError(f"cannot read an attention mask of shape {tuple(mask.shape)}")
    row = _last_row(mask, keys).to(device)
    if row.dtype == torch.bool:
        return row
    # additive masks hold the dtype's lowest value (or -inf) where a key is masked
    return row.float() > torch.finfo(row.dtype).min / 2


def summarize_attention_rows(
    rows: torch.Tensor,
    key_lengths: torch.Tensor | None = None,
    collapsed_threshold: float = 0.03,
    focused_threshold: float = 0.9,
    attended: torch.Tensor | None = None,
) -> torch.Tensor:
    """Summarise the last-query attention rows of every layer of one step.

    Args:
        rows: ``[layers, batch, heads, keys]`` attention weights of the newest query position
            (a layer whose weights are unknown is NaN throughout).
        key_lengths: ``[batch]`` or ``[layers, batch]`` number of real (unpadded) keys, for the
            normalisation by ln K; defaults to the full key length (or to ``attended``'s count).
        attended: ``[layers, batch, keys]`` booleans, the keys the query may attend: the basin
            score's thirds are taken over those (padding and empty cache slots left out); the
            whole key axis without it.
        collapsed_threshold: a head is collapsed when its normalised entropy is below this.
        focused_threshold: a head is focused when its largest weight is above this.

    Returns:
        ``[batch, layers, len(ATTENTION_LAYER_FIELDS)]`` float32: per layer the mean / min / max
        head entropy, the mean normalised entropy (entropy / ln K), the mean concentration (max
        weight), the number of collapsed and focused heads, and the mean basin score (attention
        mass on the middle third of the keys ÷ mass on the outer thirds; NaN below 3 keys).
    """
    weights = rows.float()
    if key_lengths is None and attended is not None:
        key_lengths = attended.sum(dim=-1)
    entropy = -torch.special.xlogy(weights, weights).sum(dim=-1)  # [layers, batch, heads]
    if key_lengths is None:
        log_k = torch.full(weights.shape[:2], math.log(weights.shape[-1]), device=weights.device)
    else:
        lengths = key_lengths.to(device=weights.device, dtype=torch.float32).clamp(min=1)
        log_k = lengths.log().expand(weights.shape[:2])
    log_k = log_k[..., None]
    normalized = torch.where(log_k > 0, entropy / log_k.clamp(min=1e-12), torch.zeros_like(entropy))
    concentration = weights.amax(dim=-1)
    # A layer without weights is NaN throughout; counting its heads would report a false 0.
    missing = torch.isnan(entropy).all(dim=-1)
    nan = torch.tensor(float("nan"), device=weights.device)
    collapsed = torch.where(missing, nan, (normalized < collapsed_threshold).sum(dim=-1).float())
    focused = torch.where(missing, nan, (concentration > focused_threshold).sum(dim=-1).float())
    basin = _basin(weights, attended)
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


def _basin(weights: torch.Tensor, attended: torch.Tensor | None) -> torch.Tensor:
    """Per layer and row, the mean over heads of the attention mass on the middle third of the
    attended keys ÷ the mass on the outer thirds; NaN below 3 attended keys."""
    if attended is None:
        attended = torch.ones(weights.shape[:2] + weights.shape[-1:], dtype=torch.bool, device=weights.device)
    attended = attended.to(weights.device)
    count = attended.sum(dim=-1, keepdim=True)  # [layers, batch, 1]
    rank = attended.cumsum(dim=-1) - 1  # the position of each attended key among them
    middle_keys = attended & (rank >= count // 3) & (rank < 2 * count // 3)
    middle = (weights * middle_keys[:, :, None, :]).sum(dim=-1)
    basin = (middle / (weights.sum(dim=-1) - middle).clamp(min=1e-12)).mean(dim=-1)
    return torch.where(count[..., 0] >= 3, basin, torch.full_like(basin, float("nan")))


def summarize_attention(
    attentions: Sequence[torch.Tensor | None],
    key_lengths: torch.Tensor | None = None,
    collapsed_threshold: float = 0.03,
    focused_threshold: float = 0.9,
    attended: torch.Tensor | None = None,
) -> torch.Tensor:
    """Summarise full attention weights as a model returns them with ``output_attentions``.

    Args:
        attentions: one ``[batch, heads, queries, keys]`` tensor per layer (``None`` for a layer
            that returned no weights: its row is NaN).
        key_lengths, collapsed_threshold, focused_threshold: see :func:`summarize_attention_rows`.
        attended: ``[batch, keys]`` booleans, the keys attended (the same for every layer).

    Returns:
        ``[batch, layers, len(ATTENTION_LAYER_FIELDS)]``, as :func:`summarize_attention_rows`.
    """
    present = [a for a in attentions if a is not None]
    if not present:
        raise ValueError("the model returned no attention weights")
    template = present[0][:, :, -1]
    rows = [a[:, :, -1] if a is not None else torch.full_like(template, float("nan")) for a in attentions]
    layers = None if attended is None else attended.expand(len(rows), -1, -1)
    return summarize_attention_rows(
        torch.stack(rows), key_lengths, collapsed_threshold, focused_threshold, layers
    )


def summarize_layer_rows(
    rows: Sequence[torch.Tensor],
    attended: Sequence[torch.Tensor],
    collapsed_threshold: float = 0.03,
    focused_threshold: float = 0.9,
) -> torch.Tensor:
    """:func:`summarize_attention_rows` for layers whose rows may differ in shape (sliding-window
    layers keep fewer keys, cross-attention layers attend other keys): layers of one shape are
    summarised together.

    Args:
        rows: per layer ``[batch, heads, keys_l]`` (:func:`last_query_weights`).
        attended: per layer ``[batch, keys_l]`` booleans, the keys attended.

    Returns:
        ``[batch, layers, len(ATTENTION_LAYER_FIELDS)]``.
    """
    shapes = {tuple(row.shape) for row in rows}
    if len(shapes) == 1:
        return summarize_attention_rows(
            torch.stack(list(rows)), None, collapsed_threshold, focused_threshold, torch.stack(list(attended))
        )
    parts: dict[int, torch.Tensor] = {}
    for shape in sorted(shapes):
        members = [i for i, row in enumerate(rows) if tuple(row.shape) == shape]
        stats = summarize_attention_rows(
            torch.stack([rows[i] for i in members]),
            None,
            collapsed_threshold,
            focused_threshold,
            torch.stack([attended[i] for i in members]),
        )
        for position, layer in enumerate(members):
            parts[layer] = stats[:, position]
    return torch.stack([parts[layer] for layer in range(len(rows))], dim=1)
