"""Forward hooks, registered once per model instance, that dispatch to the current session.

The hooks do nothing unless a capture session for *this* model is current in the calling
context (a context variable), so concurrent threads, nested ``generate`` calls of an assistant
model and plain ``forward`` calls by the user are untouched. Where the installed transformers needs
it (:mod:`.forward_gate`), the hooks also keep a forward that records layer outputs from overlapping
any other forward of the same model.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import torch

from .forward_gate import ForwardGate, gate_for, held, layer_outputs_need_gate, release_held

logger = logging.getLogger(__name__)

ObserverT = TypeVar("ObserverT", bound="ForwardObserver")


class ForwardObserver(Protocol):
    """What the hooks report a forward to: a :class:`CaptureSession` (one ``generate()`` call), or a
    continuous-batching step (``batching.BatchStep``)."""

    model: Any

    def before_forward(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None: ...

    def after_forward(self, kwargs: dict[str, Any], output: Any) -> None: ...


_CURRENT: contextvars.ContextVar[ForwardObserver | None] = contextvars.ContextVar(
    "corevital_capture_session", default=None
)


@contextlib.contextmanager
def active_session(session: ObserverT) -> Iterator[ObserverT]:
    """Make ``session`` the one the hooks report to, for the duration of the block."""
    token = _CURRENT.set(session)
    try:
        yield session
    finally:
        _CURRENT.reset(token)


def current_observer() -> ForwardObserver | None:
    """The observer current in this context (``None`` outside a captured call)."""
    return _CURRENT.get()


def _session_for(module: torch.nn.Module) -> ForwardObserver | None:
    session = _CURRENT.get()
    if session is None or session.model is not module:
        return None
    if torch.compiler.is_compiling():
        # A torch.compile'd forward cannot run Python side effects; the session notices the
        # missing steps and reports the capture as incomplete instead of breaking the graph.
        return None
    return session


def _records_layers(module: torch.nn.Module, kwargs: dict[str, Any]) -> bool:
    config = getattr(module, "config", None)
    return bool(
        kwargs.get("output_hidden_states")
        or kwargs.get("output_attentions")
        or getattr(config, "output_hidden_states", False)
        or getattr(config, "output_attentions", False)
    )


def _pre_hook(
    gate: ForwardGate | None, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    session = _session_for(module)
    changed = session.before_forward(args, kwargs) if session is not None else None
    if gate is not None:
        gate.enter(exclusive=_records_layers(module, changed[1] if changed is not None else kwargs))
    return changed


def _post_hook(
    gate: ForwardGate | None,
    module: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    output: Any,
) -> None:
    # Registered with always_call: it also runs when the forward raised (``output`` is then None).
    try:
        session = _session_for(module)
        if session is not None and output is not None:
            session.after_forward(kwargs, output)
    finally:
        if gate is not None:
            gate.exit()


class HookRegistry:
    """The hooks CoreVital added, so that ``uninstrument()`` can remove every one of them.

    After :meth:`remove_all` the registry is closed: a call still in flight adds no hook again
    (``instrument()`` makes a new registry).
    """

    def __init__(self) -> None:
        self._handles: weakref.WeakKeyDictionary[torch.nn.Module, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._closed = False

    def ensure(self, model: torch.nn.Module) -> None:
        """Register the two hooks on ``model`` if they are not there yet."""
        if model in self._handles or self._closed:
            return
        with self._lock:
            if model in self._handles or self._closed:
                return
            # One gate per model, whichever registry hooks it: the forwards of a call that began
            # before a re-instrumentation and of one that began after must still not overlap.
            gate = gate_for(model) if layer_outputs_need_gate() else None
            pre = model.register_forward_pre_hook(functools.partial(_pre_hook, gate), with_kwargs=True)
            post = model.register_forward_hook(
                functools.partial(_post_hook, gate), with_kwargs=True, always_call=True
            )
            self._handles[model] = (pre, post)

    @staticmethod
    def holds() -> dict[ForwardGate, int]:
        """What this thread holds of the forward gates now (the start of a call)."""
        return held()

    @staticmethod
    def release(before: dict[ForwardGate, int]) -> None:
        """Release what this thread took of any forward gate since ``before`` (the end of a call):
        also a gate whose hooks were removed while a forward held it."""
        release_held(before)

    def __len__(self) -> int:
        return len(self._handles)

    def remove_all(self) -> None:
        """Remove every hook this registry added, and add none from now on."""
        with self._lock:
            self._closed = True
            for pre, post in list(self._handles.values()):
                pre.remove()
                post.remove()
            self._handles.clear()
