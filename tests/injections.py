"""Faults injected into tiny models for the tests (a layer's output replaced, attention made one-hot,
forwards counted); not a test."""

from __future__ import annotations

import torch


def layer_output_hook(transform):  # type: ignore[no-untyped-def]
    """A forward hook replacing a decoder layer's hidden-state output with ``transform(hidden)``."""

    def hook(module, args, output):  # type: ignore[no-untyped-def]
        if isinstance(output, tuple):
            return (transform(output[0]), *output[1:])
        return transform(output)

    return hook


class StepCounter:
    """Counts the model's forwards (= decoding steps) during one generate call."""

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        self.step = -1
        model.register_forward_pre_hook(self)

    def __call__(self, module, args) -> None:  # type: ignore[no-untyped-def]
        self.step += 1


def one_hot_attention(model) -> None:  # type: ignore[no-untyped-def]
    """Make every self-attention layer of a tiny Llama put all its weight on the first key, on any
    kernel: each layer is handed a mask that leaves only key 0 (what the kernel and CoreVital's
    read-out both see)."""

    def hook(module, args, kwargs):  # type: ignore[no-untyped-def]
        hidden = kwargs["hidden_states"]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = cache.get_seq_length(module.layer_idx) if cache is not None else 0
        queries = hidden.shape[1]
        mask = torch.full((hidden.shape[0], 1, queries, past + queries), float("-inf"), dtype=hidden.dtype)
        mask[..., 0] = 0.0
        return args, {**kwargs, "attention_mask": mask}

    for layer in model.model.layers:
        layer.self_attn.register_forward_pre_hook(hook, with_kwargs=True)
