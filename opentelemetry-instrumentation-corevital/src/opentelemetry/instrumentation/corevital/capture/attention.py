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

Which calls are read: those made during a forward of the call's own model, by its self-attention
modules (an encoder-decoder's encoder and cross-attention are left out: their ``is_causal`` is
false), counted in call order as layers 0, 1, … A model whose attention does not go through the
interface (older model code, or transformers 4.5x with the eager kernel, which calls its eager
function directly) shows no calls: the read-out says so (``corevital.capture.unavailable_reason``).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch

from ..summaries import ATTENTION_LAYER_FIELDS, last_query_weights, summarize_layer_rows
from . import hooks

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


class _ModelModules:
    """Which modules of a model are its self-attention layers (cached per model, shared by threads)."""

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[Any, dict[int, bool]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def is_self_attention(self, model: Any, module: Any) -> bool:
        known = self._known.get(model)
        if known is None:
            with self._lock:
                known = self._known.get(model)
                if known is None:
                    known = self._known[model] = {id(m): True for m in model.modules()}
        if id(module) not in known:
            return False  # another model's module (an assistant model, a submodel called alone)
        encoder_decoder = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
        return not (encoder_decoder and getattr(module, "is_causal", None) is False)


_MODULES = _ModelModules()


class AttentionTap:
    """The attention statistics of one call's forwards, one ``[rows, layers, fields]`` tensor a step.

    The capture session opens a forward (:meth:`begin`), the wrapped attention functions report
    each layer (:meth:`observe`), and the session closes the forward (:meth:`end`). A failure here
    is kept in :attr:`error` and ends attention for the call; it never reaches the model.

    Args:
        model: the call's model (other models' attention calls are ignored).
        collapsed_threshold, focused_threshold: head thresholds of the model profile.
    """

    def __init__(self, model: Any, collapsed_threshold: float = 0.03, focused_threshold: float = 0.9) -> None:
        self.model = model
        self.listening = False
        self.error: BaseException | None = None
        self.heads = 0
        self.layers = 0  # layers seen in the first forward; later forwards are read as that many
        self._collapsed = collapsed_threshold
        self._focused = focused_threshold
        self._rows: list[torch.Tensor] = []
        self._lengths: list[torch.Tensor] = []

    def begin(self) -> None:
        self._rows.clear()
        self._lengths.clear()
        self.listening = self.error is None

    def observe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """One attention call: ``(module, query, key, value, attention_mask, …)`` as the model made it."""
        if not self.listening:
            return
        try:
            module = args[0] if args else kwargs.get("module")
            if not _MODULES.is_self_attention(self.model, module):
                return
            query = args[1] if len(args) > 1 else kwargs["query"]
            key = args[2] if len(args) > 2 else kwargs["key"]
            mask = args[4] if len(args) > 4 else kwargs.get("attention_mask")
            if mask is not None and not isinstance(mask, torch.Tensor):
                raise TypeError(f"cannot read an attention mask of type {type(mask).__name__}")
            weights, lengths = last_query_weights(
                query,
                key,
                mask,
                scaling=kwargs.get("scaling"),
                position_bias=kwargs.get("position_bias"),
                softcap=kwargs.get("softcap"),
                sinks=kwargs.get("s_aux"),
                sliding_window=kwargs.get("sliding_window"),
            )
            self._rows.append(weights)
            self._lengths.append(lengths)
        except Exception as exc:
            self.error = exc
            self.listening = False

    def end(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """The step's ``[batch, layers, fields]`` statistics; ``None`` when no layer has reported in
        this call yet. Layers a forward did not report (the interface was unwrapped in the middle of
        the call, or reading attention failed) are NaN."""
        self.listening = False
        rows, lengths = self._rows, self._lengths
        self._rows, self._lengths = [], []
        if self.error is not None or not rows:
            if not self.layers:
                return None
            fields = len(ATTENTION_LAYER_FIELDS)
            return torch.full((batch, self.layers, fields), float("nan"), device=device)
        self.heads = int(rows[0].shape[1])
        if not self.layers:
            self.layers = len(rows)
        if len(rows) < self.layers:
            missing = torch.full_like(rows[0], float("nan"))
            rows = rows + [missing] * (self.layers - len(rows))
            lengths = lengths + [lengths[0]] * (self.layers - len(lengths))
        layers = self.layers
        return summarize_layer_rows(rows[:layers], lengths[:layers], self._collapsed, self._focused)
