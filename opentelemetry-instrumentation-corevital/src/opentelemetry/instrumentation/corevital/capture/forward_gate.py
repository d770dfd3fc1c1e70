"""One forward at a time while a forward records its layers' outputs, where transformers needs it.

transformers 4.5x returns ``output_hidden_states`` / ``output_attentions`` of the newer model classes
by *monkey-patching* each decoder layer's ``forward`` for the duration of the call
(``utils.generic.check_model_inputs``) and collecting into a dict local to that call. Two threads
running the same model at once then see each other's patches: a forward that asked for hidden states
collects another thread's layer outputs (wrong shapes, or wrong data of the right shape), and patches
restored out of order can stay installed. transformers 5 records through forward hooks and a context
variable (``utils.output_capturing``) and needs none of this.

Where it is needed, :class:`ForwardGate` makes each forward of a model that records layer outputs
*exclusive* and every other forward of that model *shared*: recording forwards never overlap any
other forward of the same model, plain forwards still run in parallel with each other. Forwards
nest (a forward inside a forward of the same thread passes through). The generate wrapper releases
whatever its thread still holds when the call ends (:func:`release_held`) — every gate, also one
whose hooks ``uninstrument()`` removed in the middle of a forward, so that neither an interrupted
forward nor a missing post-hook can leave the model locked.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
import weakref
from typing import Any, Literal

Mode = Literal["exclusive", "alongside", "nested"]

# The gates this thread holds something of, whichever hook registry made them.
_HELD = threading.local()
# One gate per model, for the model's lifetime (shared by every hook registry).
_GATES: weakref.WeakKeyDictionary[Any, ForwardGate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def gate_for(model: Any) -> ForwardGate:
    """The model's forward gate (one per model, whoever asks)."""
    gate = _GATES.get(model)
    if gate is None:
        with _GATES_LOCK:
            gate = _GATES.get(model)
            if gate is None:
                gate = _GATES[model] = ForwardGate()
    return gate


def held() -> dict[ForwardGate, int]:
    """What this thread holds now, gate by gate (how deep): taken when a ``generate()`` call starts."""
    gates: set[ForwardGate] = getattr(_HELD, "gates", set())
    return {gate: len(gate._stack()) for gate in gates}


def release_held(before: dict[ForwardGate, int] | None = None) -> None:
    """Release what this thread took of any gate since ``before`` (:func:`held` at the start of the
    call; everything without it): the end of a ``generate()`` call. What an enclosing forward of the
    same thread held before the call stays held."""
    before = before or {}
    gates: set[ForwardGate] = getattr(_HELD, "gates", set())
    for gate in list(gates):
        gate.release_to(before.get(gate, 0))


@functools.cache
def layer_outputs_need_gate() -> bool:
    """Whether the installed transformers collects layer outputs in a way threads can corrupt."""
    try:
        return importlib.util.find_spec("transformers.utils.output_capturing") is None
    except (ImportError, ValueError):  # pragma: no cover - transformers always importable here
        return True


class ForwardGate:
    """Shared/exclusive use of one model's forward (see the module docstring)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._held = threading.local()

    def _stack(self) -> list[Mode]:
        stack: list[Mode] | None = getattr(self._held, "stack", None)
        if stack is None:
            stack = self._held.stack = []
        return stack

    def enter(self, exclusive: bool) -> None:
        """Hold the forward, exclusively or shared; a nested forward of this thread passes."""
        stack = self._stack()
        if stack:
            stack.append("nested")
            return
        with self._condition:
            if exclusive:
                self._exclusive_waiting += 1
                try:
                    while self._exclusive or self._shared:
                        self._condition.wait()
                finally:
                    self._exclusive_waiting -= 1
                self._exclusive = True
            else:
                # Waiting exclusive forwards go first, so a stream of plain forwards cannot starve them.
                while self._exclusive or self._exclusive_waiting:
                    self._condition.wait()
                self._shared += 1
        stack.append("exclusive" if exclusive else "alongside")
        held: set[ForwardGate] | None = getattr(_HELD, "gates", None)
        if held is None:
            held = _HELD.gates = set()
        held.add(self)

    def exit(self) -> None:
        """Release what the matching :meth:`enter` took (nothing when this thread holds nothing)."""
        stack = self._stack()
        if stack:
            self._release(stack.pop())
        if not stack:
            getattr(_HELD, "gates", set()).discard(self)

    def release_to(self, depth: int) -> None:
        """Release what this thread holds beyond ``depth`` nested holds."""
        stack = self._stack()
        while len(stack) > depth:
            self._release(stack.pop())
        if not stack:
            getattr(_HELD, "gates", set()).discard(self)

    def release_thread(self) -> None:
        """Release everything this thread still holds (a forward interrupted by a BaseException)."""
        stack = self._stack()
        while stack:
            self._release(stack.pop())

    def _release(self, mode: Mode) -> None:
        if mode == "nested":
            return
        with self._condition:
            if mode == "exclusive":
                self._exclusive = False
            else:
                self._shared -= 1
            self._condition.notify_all()
