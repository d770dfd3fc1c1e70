"""Attention statistics read where transformers computes attention, never by changing the kernel.

transformers (4.48 and later) runs every attention layer through one lookup in
``ALL_ATTENTION_FUNCTIONS``: the attention module asks for the function registered for
``config._attn_implementation`` (``sdpa``, ``flash_attention_*``, ``flex_attention``, the paged
kernels, or the model's own eager function as the default) and calls it with the post-RoPE query,
the full cached keys, the mask and the scaling. :func:`install` wraps that lookup: while a call that
captures attention is current in *this* context (:mod:`.hooks`), the function handed to the model
is the model's own one, called unchanged for the output, followed by :class:`AttentionTap` reading
the last query row's weights on the side (``summaries.last_query_weights``). Every other thread,
call and model gets the very function it would have got uninstrumented. Outputs are therefore
bit-identical on every kernel, nothing waits for anything, and the memory is one ``[heads, keys]``
row per layer whatever the prompt length.

Which calls are read: those made during a forward of the call's own model by its attention layers —
the modules whose weights ``output_attentions`` would return (:mod:`.attention_layers`), each at its
own column; a vision tower, an encoder or another model running in the same forward is left out. A
model whose attention does not go through the interface (older model code, or transformers 4.5x
with the eager kernel, which calls its eager function directly) shows no calls: the read-out says
so (``corevital.capture.unavailable_reason``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ..summaries import ATTENTION_LAYER_FIELDS, last_query_weights, summarize_layer_rows
from . import hooks
from .attention_layers import AttentionLayers, LayerIndex

#: Why attention has no read-out when the model's attention did not go through the interface.
NOT_THROUGH_INTERFACE = (
    "the model's attention layers do not call transformers' attention interface "
    "(ALL_ATTENTION_FUNCTIONS), where CoreVital reads attention"
)

INTERFACE_MODULE = "transformers.modeling_utils"
INTERFACE_CLASS = "AttentionInterface"


def interface_method() -> str | None:
    """The ``AttentionInterface`` method that hands a model its attention function:
    ``get_interface`` (transformers 5, the eager default included), ``__getitem__`` (4.5x, where a
    model looks up only non-eager kernels), ``None`` when transformers has no attention interface."""
    try:
        from transformers import modeling_utils
    except ImportError:  # pragma: no cover - transformers is a requirement of _instrument
        return None
    interface = getattr(modeling_utils, INTERFACE_CLASS, None)
    if interface is None:
        return None
    return "get_interface" if "get_interface" in vars(interface) else "__getitem__"


def reads_weights(model: Any) -> bool:
    """Whether attention must be read from the weights the model returns (``output_attentions``)
    rather than through the interface: only under transformers 4.5x with the eager kernel, whose
    model code calls its eager function directly — and computes the weights anyway, so asking for
    them changes no number (it costs their memory: every layer's prompt attention at once)."""
    kernel = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return kernel == "eager" and interface_method() == "__getitem__"


def lookup_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``wrapt`` wrapper of the interface lookup: the model's own function, observed when the call
    current in this context captures attention."""
    function = wrapped(*args, **kwargs)
    session = hooks.current_observer()
    tap = getattr(session, "attention_tap", None) if session is not None else None
    if tap is None or not tap.listening or not callable(function) or torch.compiler.is_compiling():
        return function  # a compiled graph gets the model's own function, as the hooks step aside
    return functools.partial(_observed, function, tap)


def _observed(function: Callable[..., Any], tap: AttentionTap, *args: Any, **kwargs: Any) -> Any:
    result = function(*args, **kwargs)
    tap.observe(args, kwargs)
    return result


_LAYERS = LayerIndex()


class AttentionTap:
    """The attention statistics of one call's forwards, one ``[rows, layers, fields]`` tensor a step.

    The capture session opens a forward (:meth:`begin`), the wrapped attention functions report
    each call (:meth:`observe`: only the model's attention layers count, each at its own column,
    :mod:`.attention_layers`), and the session closes the forward (:meth:`end`). A failure here is
    kept in :attr:`error` and ends attention for the call; a mask that cannot be read (a flex
    ``BlockMask``) in :attr:`unsupported`. Neither ever reaches the model.

    Args:
        model: the call's model (other models' attention calls are ignored).
        collapsed_threshold, focused_threshold: head thresholds of the model profile.
    """

    def __init__(self, model: Any, collapsed_threshold: float = 0.03, focused_threshold: float = 0.9) -> None:
        self.model = model
        self.listening = False
        self.error: BaseException | None = None
        self.unsupported: str | None = None
        self.heads = 0
        self.seen = False  # some layer reported in some forward of the call
        self._layers: AttentionLayers | None = None
        self._collapsed = collapsed_threshold
        self._focused = focused_threshold
        self._rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def begin(self) -> None:
        self._rows.clear()
        self.listening = self.error is None and self.unsupported is None

    def observe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """One attention call: ``(module, query, key, value, attention_mask, …)`` as the model made it."""
        if not self.listening:
            return
        try:
            if self._layers is None:
                self._layers = _LAYERS.of(self.model)
            module = args[0] if args else kwargs.get("module")
            column = self._layers.columns.get(id(module))
            if column is None:
                return  # not one of the model's layers (a vision tower, an encoder, another model)
            query = args[1] if len(args) > 1 else kwargs["query"]
            key = args[2] if len(args) > 2 else kwargs["key"]
            mask = args[4] if len(args) > 4 else kwargs.get("attention_mask")
            if mask is not None and not isinstance(mask, torch.Tensor):
                self.unsupported = f"the attention mask of this kernel ({type(mask).__name__}) cannot be read"
                self.listening = False
                return
            self._rows[column] = last_query_weights(
                query,
                key,
                mask,
                scaling=kwargs.get("scaling"),
                position_bias=kwargs.get("position_bias"),
                softcap=kwargs.get("softcap"),
                sinks=kwargs.get("s_aux", kwargs.get("sinks")),
                sliding_window=kwargs.get("sliding_window"),
            )
        except Exception as exc:
            self.error = exc
            self.listening = False

    def end(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """The step's ``[batch, layers, fields]`` statistics; ``None`` while no layer has reported in
        this call. Layers a forward did not report (the interface was unwrapped in the middle of
        the call, or reading attention failed) are NaN."""
        self.listening = False
        rows, self._rows = self._rows, {}
        count = self._layers.count if self._layers is not None else 0
        if rows and self.error is None:
            try:
                first = next(iter(rows.values()))
                self.heads = int(first[0].shape[1])
                missing = (torch.full_like(first[0], float("nan")), first[1])
                ordered = [rows.get(column, missing) for column in range(count)]
                self.seen = True
                return summarize_layer_rows(
                    [weights for weights, _ in ordered],
                    [keys for _, keys in ordered],
                    self._collapsed,
                    self._focused,
                )
            except Exception as exc:  # e.g. a layer whose rows cannot be summarised with the others
                self.error = exc
        if not self.seen:
            return None
        return torch.full((batch, count, len(ATTENTION_LAYER_FIELDS)), float("nan"), device=device)
