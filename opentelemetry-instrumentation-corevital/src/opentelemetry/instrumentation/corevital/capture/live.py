"""The live watch of ``stop_on``: the streaming detectors, fed step by step, decide which sequence to
stop — and nothing else.

Only a call with ``stop_on`` has one. It runs one :class:`~..signals.streaming.SequenceMonitor` per
row (the same detector implementations the read-out replays over the finished series, so both find
the same firings at the same steps), fed with host floats from one small device -> host copy per
step: the step's entropy, margin, NaN/Inf evidence and state similarity as soon as its forward ran,
then the chosen token and its surprisal as soon as it is known. Its firings are not reported: the
read-out finds them again from what was recorded; what the watch hands over is the stops it made.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

import numpy as np
import torch

from .. import report as rep
from ..summaries import logit_metrics, surprisal_bits
from .layout import StepLayout


class Monitor(Protocol):
    """What the watch feeds per row (``signals.streaming.SequenceMonitor``)."""

    def observe_step(
        self, entropy: float, margin: float, similarity: float = ..., nan: bool = ..., inf: bool = ...
    ) -> object: ...

    def observe_token(self, token: int, surprisal: float = ...) -> object: ...

    def fired(self, name: str) -> bool: ...


class LiveWatch:
    """Per-row monitors of one call and the stops they decided.

    Args:
        make_monitor: builds the monitor of one row.
        stop_on: signal names that stop the sequence they fire in.
    """

    def __init__(self, make_monitor: Callable[[], Monitor], stop_on: Collection[str]) -> None:
        self._make_monitor = make_monitor
        self._stop_on = sorted(stop_on)
        self._monitors: list[Monitor] = []
        self.interventions: dict[int, rep.Intervention] = {}

    def observe_step(
        self,
        packed: torch.Tensor,
        layout: StepLayout,
        tokens: torch.Tensor | None = None,
        chosen: torch.Tensor | None = None,
    ) -> None:
        """A step's packed ``[rows, width]`` row(s), with the tokens of the step before and their
        probabilities when those were not yet observed: one device -> host copy."""
        rows = packed.shape[0]
        if not self._monitors:
            self._monitors = [self._make_monitor() for _ in range(rows)]
        columns = [packed.float()]
        if tokens is not None:
            probability = chosen if chosen is not None else torch.full((rows,), float("nan"))
            columns.append(torch.stack((tokens.float(), probability.float()), dim=-1).to(packed.device))
        host = torch.cat(columns, dim=-1).cpu().numpy().astype(np.float64)
        if tokens is not None:
            self._tokens(host[:, -2], host[:, -1])
        data = host[:, : layout.width]
        metrics = logit_metrics(data[:, layout.logits])
        nan, inf = layout.nonfinite(data)
        entropy = metrics["entropy"]
        similarity = data[:, layout.max_similarity] if layout.hidden_layers else np.full(rows, np.nan)
        for row, monitor in enumerate(self._monitors[:rows]):
            monitor.observe_step(
                float(entropy[row]), float(metrics["margin"][row]), float(similarity[row]),
                bool(nan[row] or np.isnan(entropy[row])), bool(inf[row]),
            )  # fmt: skip

    def observe_tokens(self, tokens: torch.Tensor, chosen: torch.Tensor | None) -> None:
        """The tokens chosen at the newest step and their probabilities (one copy)."""
        probability = chosen if chosen is not None else torch.full(tokens.shape, float("nan"))
        host = torch.stack((tokens.float().to(probability.device), probability.float()), dim=-1).cpu().numpy()
        self._tokens(host[:, 0], host[:, 1])

    def _tokens(self, tokens: np.ndarray, probability: np.ndarray) -> None:
        for monitor, token, surprisal in zip(
            self._monitors, tokens, surprisal_bits(probability), strict=False
        ):
            monitor.observe_token(int(token), float(surprisal))

    def stops(self, step: int) -> list[int]:
        """The rows a ``stop_on`` signal fired in and that were not stopped yet: stopped now, at
        ``step`` (recorded as interventions)."""
        stopped = []
        for row, monitor in enumerate(self._monitors):
            if row in self.interventions:
                continue
            signal = next((name for name in self._stop_on if monitor.fired(name)), None)
            if signal is not None:
                self.interventions[row] = rep.Intervention(row, signal, step)
                stopped.append(row)
        return stopped
