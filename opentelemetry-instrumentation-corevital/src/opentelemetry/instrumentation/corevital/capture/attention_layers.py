"""Which attention modules of a model are its layers, and which column of the read-out each one is.

The layers are the ones whose weights ``output_attentions`` would return: the attention modules of
the model's decoder (``get_decoder()``: the language model of a vision-language model, the decoder
stack of an encoder-decoder), as transformers itself selects them — its ``_can_record_outputs``
entry for ``attentions`` (a module class, or an ``OutputRecorder`` with a class and a name part).
Modules that run in the same forward but are not layers — a vision or audio tower, an encoder, a
decoder's cross-attention unless transformers records it as the layer's attention — get no column.
Each layer keeps its column at every step, whatever else runs. Without that entry (older model
code), the decoder's modules with a ``layer_idx`` are the layers, cross-attention left out by name.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch

#: Parts of a module's name that mark cross-attention (left out where transformers says nothing).
_CROSS = ("cross", "encoder_attn", "encdec")


@dataclass(frozen=True)
class AttentionLayers:
    """The attention layers of one model: ``columns`` maps a module (by ``id``) to its layer."""

    columns: dict[int, int]
    count: int


def _decoder(model: Any) -> Any:
    getter = getattr(model, "get_decoder", None)
    try:
        decoder = getter() if callable(getter) else None
    except Exception:  # a model whose get_decoder is not implemented
        decoder = None
    return decoder if isinstance(decoder, torch.nn.Module) else model


def _recorders(decoder: Any) -> list[Any]:
    spec = getattr(type(decoder), "_can_record_outputs", None)
    value = spec.get("attentions") if isinstance(spec, dict) else None
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _recorded(recorder: Any, name: str, module: Any) -> bool:
    """Whether ``recorder`` (a class, or an ``OutputRecorder``) selects ``module``, as transformers
    selects the modules whose outputs it records."""
    if isinstance(recorder, type):
        return isinstance(module, recorder)
    target = getattr(recorder, "target_class", None)
    class_name = getattr(recorder, "class_name", None)
    if target is None and class_name is None:
        return False
    if target is not None and not isinstance(module, target):
        return False
    if class_name is not None and not type(module).__name__.endswith(class_name):
        return False
    layer_name = getattr(recorder, "layer_name", None)
    return layer_name is None or layer_name in name


def _cross(name: str) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return any(part in last for part in _CROSS)


def find_layers(model: Any) -> AttentionLayers:
    """The attention layers of ``model`` (see the module docstring)."""
    decoder = _decoder(model)
    modules = list(decoder.named_modules())
    recorders = _recorders(decoder)
    if recorders:
        chosen = [name for name, module in modules if any(_recorded(r, name, module) for r in recorders)]
    else:
        chosen = [
            name
            for name, module in modules
            if name and isinstance(getattr(module, "layer_idx", None), int) and not _cross(name)
        ]
    targets: dict[str, int] = {}
    for name in chosen:  # the outermost of nested matches is the layer
        if not any(name.startswith(outer + ".") for outer in targets):
            targets[name] = len(targets)
    columns: dict[int, int] = {}
    for name, module in modules:
        if _cross(name) and not any(_recorded(r, name, module) for r in recorders):
            continue  # a cross-attention module inside a layer is not the layer's attention
        prefix = name
        while prefix not in targets and prefix:
            prefix = prefix.rpartition(".")[0]
        if prefix in targets:
            columns[id(module)] = targets[prefix]
    return AttentionLayers(columns, len(targets))


class LayerIndex:
    """:func:`find_layers` once per model (shared by threads; forgotten with the model)."""

    def __init__(self) -> None:
        self._layers: weakref.WeakKeyDictionary[Any, AttentionLayers] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def of(self, model: Any) -> AttentionLayers:
        layers = self._layers.get(model)
        if layers is None:
            with self._lock:
                layers = self._layers.get(model)
                if layers is None:
                    layers = self._layers[model] = find_layers(model)
        return layers
