"""How close the last layer's state comes back to where it was: the one implementation of the
cosine to the previous step and of the largest cosine to any earlier step.

A bounded ring buffer of unit vectors per row, so a step costs one batched product with at most
``window`` earlier states and memory does not grow with the number of steps.
"""

from __future__ import annotations

import torch

#: How many earlier last-layer states the similarity looks back over (bounded memory).
SIMILARITY_WINDOW = 256


class StateSimilarity:
    """Per row, the cosine of each new state to the previous step's and the largest cosine to the
    states two or more steps back (the previous step excluded: consecutive states are always close).

    >>> ring = StateSimilarity(window=4)
    >>> e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    >>> [tuple(round(v, 3) for v in (p.item(), m.item())) for p, m in map(ring.update, (e1, e2, e1))]
    [(nan, nan), (0.0, nan), (0.0, 1.0)]
    """

    def __init__(self, window: int = SIMILARITY_WINDOW) -> None:
        if window < 2:
            raise ValueError(f"the window needs at least 2 states, got {window}")
        self.window = window
        self._states: torch.Tensor | None = None  # [rows, window, hidden] unit vectors
        self._count = 0

    def update(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add ``state`` (``[rows, hidden]``); return ``(cosine_previous, max_similarity)``, each
        ``[rows]`` float32, NaN where there are not enough earlier steps."""
        unit = torch.nn.functional.normalize(state.float(), dim=-1)
        rows, width = unit.shape
        if self._states is None or self._states.shape[0] != rows or self._states.shape[-1] != width:
            self._states = torch.zeros(rows, self.window, width, device=unit.device)
            self._count = 0
        nan = torch.full((rows,), float("nan"), device=unit.device)
        filled = min(self._count, self.window)
        newest = (self._count - 1) % self.window
        previous, similarity = nan, nan
        if filled >= 1:
            cosines = torch.bmm(self._states[:, :filled], unit[:, :, None]).squeeze(-1)
            previous = cosines[:, newest].clone()
            if filled >= 2:
                cosines[:, newest] = -2.0  # the previous step does not count
                similarity = cosines.amax(dim=-1)
        self._states[:, self._count % self.window] = unit
        self._count += 1
        return previous, similarity

    def clear(self) -> None:
        """Forget every state (frees the buffer)."""
        self._states = None
        self._count = 0
