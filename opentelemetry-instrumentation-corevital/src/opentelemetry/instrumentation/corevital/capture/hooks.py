"""Forward hooks, registered once per model instance, that dispatch to the current session.

The hooks do nothing unless a capture session for *this* model is current in the calling
context (a context variable), so concurrent threads, nested ``generate`` calls of an assistant
model and plain ``forward`` calls by the user are untouched.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import torch

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


def _session_for(module: torch.nn.Module) -> ForwardObserver | None:
    session = _CURRENT.get()
    if session is None or session.model is not module:
        return None
    if torch.compiler.is_compiling():
        # A torch.compile'd forward cannot run Python side effects; the session notices the
        # missing steps and reports the capture as incomplete instead of breaking the graph.
        return None
    return session


def _pre_hook(
    module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    session = _session_for(module)
    if session is None:
        return None
    return session.before_forward(args, kwargs)


def _post_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
    session = _session_for(module)
    if session is not None:
        session.after_forward(kwargs, output)


class HookRegistry:
    """The hooks CoreVital added, so that ``uninstrument()`` can remove every one of them."""

    def __init__(self) -> None:
        self._handles: weakref.WeakKeyDictionary[torch.nn.Module, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def ensure(self, model: torch.nn.Module) -> None:
        """Register the two hooks on ``model`` if they are not there yet."""
        if model in self._handles:
            return
        with self._lock:
            if model in self._handles:
                return
            pre = model.register_forward_pre_hook(_pre_hook, with_kwargs=True)
            post = model.register_forward_hook(_post_hook, with_kwargs=True)
            self._handles[model] = (pre, post)

    def __len__(self) -> int:
        return len(self._handles)

    def remove_all(self) -> None:
        """Remove every hook this registry added."""
        with self._lock:
            for pre, post in list(self._handles.values()):
                pre.remove()
                post.remove()
            self._handles.clear()
