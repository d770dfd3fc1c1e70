"""The attention kernel of a shared model, switched safely under concurrency.

Attention weights exist only in the eager attention kernel, so ``capture="attention"`` has to run
the model with eager attention. The kernel is a property of the model object, shared by every thread
that uses it, and eager and fused kernels do not give bit-identical logits: switching it under a
thread that did not ask for it can change that thread's tokens. :class:`KernelGate` makes the switch
a shared/exclusive hand-over per model:

- calls that capture attention share *eager mode*: the first one switches the model to eager once
  every call using the model's own kernel has finished; the last one switches it back;
- every other ``generate()`` call on the model (instrumented at another level, unsampled, suppressed)
  runs with the model's own kernel: it waits while eager mode is held or requested, and holds the
  kernel while it runs;
- an attention-capture call waits at most ``timeout`` seconds for the model to become free; if it
  cannot, it runs on the model's own kernel without attention statistics and says why on its span.

Each call therefore runs with exactly the kernel it would have single-threaded. Models that are eager
from the start pay nothing. Direct ``model(...)`` forward calls outside ``generate()`` are not
coordinated.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

EAGER = "eager"

#: How long an attention-capture call waits for the model's other calls before it gives up on
#: attention for that call.
DEFAULT_TIMEOUT_S = 10.0


def current_kernel(model: Any) -> str | None:
    """The attention implementation the model runs with (``None`` when it has none)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def _set_kernel(model: Any, name: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        setter(name)
    else:
        model.config._attn_implementation = name


class KernelGate:
    """Shared/exclusive use of one model's attention kernel (see the module docstring)."""

    def __init__(self, model: Any, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._model = weakref.ref(model)
        self._timeout = timeout
        self._condition = threading.Condition()
        self._own_users = 0  # calls running with the model's own kernel
        self._eager_users = 0  # attention-capture calls running in eager mode
        self._eager_waiting = 0
        self._restore: str | None = None  # the kernel to restore when eager mode ends

    @contextlib.contextmanager
    def own_kernel(self) -> Iterator[None]:
        """Hold the model's own kernel for the duration of a call."""
        with self._condition:
            while self._eager_users or self._eager_waiting:
                self._condition.wait()
            self._own_users += 1
        try:
            yield
        finally:
            with self._condition:
                self._own_users -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def eager(self) -> Iterator[str | None]:
        """Hold eager mode for the duration of a call. Yields ``None`` when the model runs eager, or
        the reason it could not be switched (the call then runs on the model's own kernel)."""
        model = self._model()
        if model is None:
            yield "the model is gone"
            return
        deadline = time.monotonic() + self._timeout
        with self._condition:
            self._eager_waiting += 1
            try:
                while self._own_users:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._condition.wait(left)
                acquired = not self._own_users
                if acquired:
                    if self._eager_users == 0:
                        kernel = current_kernel(model)
                        if kernel not in (None, EAGER):
                            _set_kernel(model, EAGER)
                            self._restore = kernel
                    self._eager_users += 1
            finally:
                self._eager_waiting -= 1
                self._condition.notify_all()
        if not acquired:
            with self.own_kernel():
                yield f"the model was busy with other calls for {self._timeout:g} s"
            return
        try:
            yield None
        finally:
            with self._condition:
                self._eager_users -= 1
                if self._eager_users == 0 and self._restore is not None:
                    try:
                        _set_kernel(model, self._restore)
                    finally:
                        self._restore = None
                self._condition.notify_all()


class KernelGates:
    """One :class:`KernelGate` per model that does not run eager natively."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._gates: weakref.WeakKeyDictionary[Any, KernelGate] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._timeout = timeout

    def for_model(self, model: Any) -> KernelGate | None:
        """The model's gate; ``None`` when the model is natively eager or has no attention kernel
        (nothing to coordinate)."""
        gate = self._gates.get(model)
        if gate is not None:
            return gate
        if current_kernel(model) in (None, EAGER):
            return None
        with self._lock:
            gate = self._gates.get(model)
            if gate is None:
                gate = self._gates[model] = KernelGate(model, self._timeout)
            return gate

    def own_kernel(self, model: Any) -> contextlib.AbstractContextManager[None]:
        """Context for a call that runs with the model's own kernel."""
        gate = self.for_model(model)
        return gate.own_kernel() if gate is not None else contextlib.nullcontext()

    def eager(self, model: Any) -> contextlib.AbstractContextManager[str | None]:
        """Context for an attention-capture call (see :meth:`KernelGate.eager`)."""
        gate = self.for_model(model)
        return gate.eager() if gate is not None else contextlib.nullcontext()
