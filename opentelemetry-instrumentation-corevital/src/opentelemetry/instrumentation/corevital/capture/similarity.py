"""How close the last layer's state comes back to where it was: the one implementation of the
cosine to the previous step and of the largest cosine to any earlier step.

A bounded ring of states per row, so memory does not grow with the number of steps. Two ways to feed
it, with the same results:

- :meth:`StateSimilarity.update` answers at once (for the streaming detectors that may stop a
  sequence at this step);
- :meth:`StateSimilarity.push` only stores the state (one copy); the similarities of the stored
  states are computed together, one batched product per block of steps, when the block is full or
  :meth:`StateSimilarity.results` is called — far fewer operations per step when nothing needs the
  answer before the call ends.
"""

from __future__ import annotations

import functools

import torch

#: How many earlier last-layer states the similarity looks back over (bounded memory).
SIMILARITY_WINDOW = 256
#: States stored before their similarities are computed together.
BLOCK = 32


class StateSimilarity:
    """Per row, the cosine of each state to the previous step's and the largest cosine to the states
    two to ``window`` steps back (the previous step excluded: consecutive states are always close).

    >>> ring = StateSimilarity(window=4)
    >>> e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    >>> [tuple(round(v, 3) for v in (p.item(), m.item())) for p, m in map(ring.update, (e1, e2, e1))]
    [(nan, nan), (0.0, nan), (0.0, 1.0)]
    """

    def __init__(self, window: int = SIMILARITY_WINDOW, block: int = BLOCK) -> None:
        if window < 2 or block < 1:
            raise ValueError(f"the window needs at least 2 states and the block 1, got {window}, {block}")
        self.window = window
        self.block = block
        self._capacity = window + block
        self._states: torch.Tensor | None = None  # [rows, capacity, hidden]; unit vectors once computed
        self._count = 0  # states stored
        self._done = 0  # states whose similarities are computed
        self._previous: list[torch.Tensor] = []  # [k, rows] blocks of results
        self._maximum: list[torch.Tensor] = []
        self._band: torch.Tensor | None = None

    def push(self, state: torch.Tensor) -> None:
        """Store the next state (``[rows, hidden]``); its similarities are computed later."""
        rows, width = state.shape
        if self._states is None or self._states.shape[0] != rows or self._states.shape[-1] != width:
            self.clear()
            self._states = torch.empty(rows, self._capacity, width, device=state.device)
        self._states[:, self._count % self._capacity] = state
        self._count += 1
        if self._count - self._done >= self.block:
            self._compute()

    def update(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``state`` and return its ``(cosine_previous, max_similarity)``, each ``[rows]``
        float32, NaN where there are not enough earlier steps."""
        self.push(state)
        self._compute()
        return self._previous[-1][-1], self._maximum[-1][-1]

    def results(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(cosine_previous, max_similarity)`` of every state stored so far, each ``[steps, rows]``;
        ``None`` before the first state."""
        self._compute()
        if not self._previous:
            return None
        return torch.cat(self._previous), torch.cat(self._maximum)

    def clear(self) -> None:
        """Forget every state and result (frees the buffer)."""
        self._states = None
        self._count = self._done = 0
        self._previous.clear()
        self._maximum.clear()

    def _compute(self) -> None:
        """The similarities of the stored states not yet computed, in one batched product."""
        if self._states is None or self._done == self._count:
            return
        start, stop, capacity = self._done, self._count, self._capacity
        if stop <= capacity:
            self._compute_unwrapped(start, stop)
            return
        steps = torch.arange(start, stop, device=self._states.device)
        slots = steps % capacity
        pending = torch.nn.functional.normalize(self._states[:, slots].float(), dim=-1)
        self._states[:, slots] = pending
        # Which step each slot holds once these are stored (slots never written hold -1).
        slot_steps = torch.arange(capacity, device=steps.device)
        slot_steps = slot_steps + ((stop - 1 - slot_steps) // capacity) * capacity
        cosines = torch.bmm(pending, self._states.transpose(1, 2))  # [rows, k, capacity]
        back = steps[:, None] - slot_steps[None, :]  # [k, capacity]: how many steps back
        valid = (slot_steps[None, :] >= 0) & (back >= 2) & (back <= self.window)
        nan = torch.tensor(float("nan"), device=cosines.device)
        masked = torch.where(valid, cosines, torch.tensor(-2.0, device=cosines.device))
        maximum = torch.where(valid.any(dim=-1), masked.amax(dim=-1), nan)  # [rows, k]
        previous_slots = ((steps - 1) % capacity).expand(cosines.shape[0], -1)[..., None]
        previous = cosines.gather(-1, previous_slots).squeeze(-1)
        previous = torch.where(steps >= 1, previous, nan)
        self._previous.append(previous.transpose(0, 1))
        self._maximum.append(maximum.transpose(0, 1))
        self._done = stop

    def _compute_unwrapped(self, start: int, stop: int) -> None:
        """The common case (the ring has not wrapped: slot i holds step i), with the step-distance
        mask cut from one precomputed band matrix instead of rebuilt."""
        assert self._states is not None
        pending = torch.nn.functional.normalize(self._states[:, start:stop].float(), dim=-1)
        self._states[:, start:stop] = pending
        cosines = torch.bmm(pending, self._states[:, :stop].transpose(1, 2))  # [rows, k, stop]
        maximum = cosines.masked_fill(self._outside_band()[start:stop, :stop], -2.0).amax(dim=-1)
        if start < 2:  # steps 0 and 1 have no state two or more steps back
            maximum[:, : 2 - start] = float("nan")
        previous = cosines.diagonal(offset=start - 1, dim1=1, dim2=2)  # [rows, k or k - 1]
        if start == 0:
            previous = torch.nn.functional.pad(previous, (1, 0), value=float("nan"))
        self._previous.append(previous.transpose(0, 1))
        self._maximum.append(maximum.transpose(0, 1))
        self._done = stop

    def _outside_band(self) -> torch.Tensor:
        """``[capacity, capacity]``: True where slot j is not 2 to ``window`` steps before step i."""
        assert self._states is not None
        band = self._band
        if band is None or band.device != self._states.device:
            band = self._band = _outside_band(self._capacity, self.window, self._states.device)
        return band


@functools.lru_cache(maxsize=8)
def _outside_band(capacity: int, window: int, device: torch.device) -> torch.Tensor:
    """The step-distance mask, built once per shape and device (read only)."""
    index = torch.arange(capacity, device=device)
    back = index[:, None] - index[None, :]
    return (back < 2) | (back > window)
