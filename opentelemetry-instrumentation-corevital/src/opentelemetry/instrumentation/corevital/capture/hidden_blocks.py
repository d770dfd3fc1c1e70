"""Per-layer hidden-state statistics computed a block of steps at a time.

When nothing needs a step's hidden-state statistics before the call ends (no ``stop_on``: the
streaming detectors are replayed over the finished series), the session only stores each step's
last-position layer states (``[layers, rows, hidden]``, in the model's dtype) and
:func:`~..summaries.summarize_hidden` runs once per block over all of them: a handful of tensor
operations per block instead of per step. The block is as many steps as fit in
:data:`BLOCK_BYTES` (at most :data:`MAX_BLOCK`, at least one), so the memory held is bounded and
small next to the model's own cache; the statistics are the same as step by step. The middle
layer's projected state (:mod:`~..summaries.representation`) is computed per block too.
"""

from __future__ import annotations

import torch

from ..summaries import HIDDEN_LAYER_FIELDS, summarize_hidden
from ..summaries.representation import project_states, representation_layer

#: Most steps stored before their statistics are computed together.
MAX_BLOCK = 32
#: Most bytes of stored states (a block holds fewer steps when one step's states are larger).
BLOCK_BYTES = 8 * 1024 * 1024


class HiddenSummaryBlocks:
    """Stores each step's last-position layer states and summarises them a block at a time.

    >>> blocks = HiddenSummaryBlocks(max_block=2)
    >>> for step in range(3):
    ...     blocks.push(torch.full((4, 1, 8), float(step)))  # 4 layers, 1 row, hidden size 8
    >>> blocks.results().shape  # [steps, rows, layers x fields]
    torch.Size([3, 1, 28])
    """

    def __init__(self, max_block: int = MAX_BLOCK, block_bytes: int = BLOCK_BYTES) -> None:
        self.max_block = max_block
        self.block_bytes = block_bytes
        self._pending: list[torch.Tensor] = []
        self._done: list[torch.Tensor] = []
        self._projected: list[torch.Tensor] = []

    def push(self, layers: torch.Tensor) -> None:
        """Store one step's ``[layers, rows, hidden]`` states (the tensor is kept, not copied)."""
        if self._pending and self._pending[0].shape != layers.shape:
            self._flush()
        self._pending.append(layers)
        step_bytes = layers.numel() * layers.element_size()
        if len(self._pending) >= max(1, min(self.max_block, self.block_bytes // max(1, step_bytes))):
            self._flush()

    def results(self) -> torch.Tensor | None:
        """``[steps, rows, layers × len(HIDDEN_LAYER_FIELDS)]`` float32 for every stored step, layer-
        major as in :class:`~.layout.StepLayout`; ``None`` before the first step or when the
        shape changed between steps."""
        self._flush()
        if not self._done:
            return None
        if any(block.shape[1:] != self._done[0].shape[1:] for block in self._done):
            return None
        return torch.cat(self._done)

    def projections(self) -> torch.Tensor | None:
        """``[steps, rows, PROJECTION_DIMS]`` float32: the middle layer's projected state of every
        stored step; ``None`` as for :meth:`results`."""
        self._flush()
        if not self._projected or any(p.shape[1:] != self._projected[0].shape[1:] for p in self._projected):
            return None
        return torch.cat(self._projected)

    def clear(self) -> None:
        """Forget every stored state and result."""
        self._pending.clear()
        self._done.clear()
        self._projected.clear()

    def _flush(self) -> None:
        if not self._pending:
            return
        block = torch.stack(self._pending)  # [k, layers, rows, hidden]
        self._pending.clear()
        steps, layers, rows, hidden = block.shape
        stats = summarize_hidden(block.reshape(steps * layers, rows, hidden))  # [rows, k x layers, F]
        fields = len(HIDDEN_LAYER_FIELDS)
        self._projected.append(project_states(block[:, representation_layer(layers)]))
        self._done.append(stats.reshape(rows, steps, layers * fields).transpose(0, 1))
