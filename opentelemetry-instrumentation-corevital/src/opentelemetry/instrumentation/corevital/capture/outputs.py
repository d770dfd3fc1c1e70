"""What the capture asks a forward for, and takes back: the ``output_*`` flags a model's forward
accepts, and the tensors dropped from its outputs once summarised."""

from __future__ import annotations

import collections
import functools
import inspect
from typing import Any

#: Output keys the capture adds when it asks for hidden states, and for attention weights.
HIDDEN_KEYS = ("hidden_states", "decoder_hidden_states", "encoder_hidden_states")
ATTENTION_KEYS = ("attentions", "decoder_attentions", "cross_attentions", "encoder_attentions")


def forward_accepts(model: Any, name: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``name`` (explicitly, or through ``**kwargs``
    of a transformers model, which routes the ``output_*`` flags itself)."""
    forward = getattr(type(model), "forward", None)
    if forward is None or "forward" in vars(model):
        return _accepts(getattr(model, "forward", None), type(model).__module__, name)  # patched per instance
    return _accepts_cached(forward, type(model).__module__, name)


@functools.lru_cache(maxsize=256)
def _accepts_cached(forward: Any, module: str, name: str) -> bool:
    return _accepts(forward, module, name)


def _accepts(forward: Any, module: str, name: str) -> bool:
    try:
        parameters = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False
    if name in parameters:
        return True
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return has_var_kw and module.startswith("transformers.")


def drop_outputs(output: Any, keys: tuple[str, ...]) -> None:
    """Remove the tensors only the capture asked for, so nothing downstream keeps them alive."""
    for key in keys:
        if isinstance(output, collections.OrderedDict) and key in output:
            # ModelOutput forbids ``del``; these keys exist only because the capture asked for them.
            collections.OrderedDict.__delitem__(output, key)
        if getattr(output, key, None) is not None:
            object.__setattr__(output, key, None)
