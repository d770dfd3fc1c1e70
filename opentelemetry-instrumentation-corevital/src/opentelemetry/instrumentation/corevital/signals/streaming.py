"""Per-sequence streaming monitor: the detectors that run as the steps arrive.

The capture session feeds one :class:`SequenceMonitor` per batch row with host floats: the step's
logit metrics and NaN/Inf evidence as soon as its forward ran, then the chosen token (and its
surprisal) as soon as it is known. Each detector fires at most once, at the step where it first
holds; the firings are handed over in the capture report (and, when the user asked for it, stop the
sequence). A step costs O(1): the early-warning detectors see short windows (:mod:`.early_warning`
reads only the ends of a series) and the repetition detector keeps a set of n-grams.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from ..report import EARLY_WARNING, HEALTH_FLAG, Firing
from . import early_warning as ew
from . import flags as fl
from ._util import list_mean
from .repetition import RepetitionDetector

__all__ = ["EARLY_WARNING", "HEALTH_FLAG", "Firing", "SequenceMonitor", "replay"]

# The longest tails the early-warning detectors read (entropy_accelerating: 10 values).
_TAIL = 10


@dataclass
class SequenceMonitor:
    """Streaming detectors of one sequence (NaN/Inf, repetition loop, early warning).

    Args:
        high_entropy_threshold_bits: the profile's entropy threshold (entropy/margin divergence).
        repetition_ngram, repetition_similarity_threshold: see :class:`RepetitionDetector`.
        eos_token_ids: a sequence ends at its first EOS; nothing after it is observed.
        early_warning: run the early-warning detectors (the model profile decides).
    """

    high_entropy_threshold_bits: float = 4.0
    repetition_ngram: int = 8
    repetition_similarity_threshold: float = 0.0
    eos_token_ids: tuple[int, ...] = ()
    early_warning: bool = True
    #: The time (Unix ns) of a step, for replays after the fact; ``None``: the time of the call.
    clock: Callable[[int], int] | None = None
    firings: list[Firing] = field(default_factory=list)
    ended: bool = False
    steps: int = 0
    tokens: int = 0
    # Finite values only: the first WINDOW and the last _TAIL of each series.
    _entropy: list[float] = field(default_factory=list)
    _margin_head: list[float] = field(default_factory=list)
    _margin: list[float] = field(default_factory=list)
    _margin_count: int = 0
    _surprisal: list[float] = field(default_factory=list)
    _similarity: list[float] = field(default_factory=list)
    _fired: set[str] = field(default_factory=set)
    _repetition: RepetitionDetector | None = None

    def __post_init__(self) -> None:
        self._repetition = RepetitionDetector(self.repetition_ngram, self.repetition_similarity_threshold)

    def fired(self, name: str) -> bool:
        """Whether the detector ``name`` has fired in this sequence."""
        return name in self._fired

    def observe_step(
        self,
        entropy: float,
        margin: float,
        similarity: float = math.nan,
        nan: bool = False,
        inf: bool = False,
    ) -> list[Firing]:
        """The forward of the next step ran: its logit metrics and NaN/Inf evidence."""
        if self.ended:
            return []
        step = self.steps
        self.steps += 1
        self._similarity.append(similarity)
        del self._similarity[:-2]  # the token of this step (or the one before) is still to come
        if math.isfinite(entropy):
            _push(self._entropy, entropy)
        if math.isfinite(margin):
            if len(self._margin_head) < ew.WINDOW:
                self._margin_head.append(margin)
            self._margin_count += 1
            _push(self._margin, margin)
        new: list[Firing] = []
        if nan or math.isnan(entropy):
            new += self._fire(HEALTH_FLAG, fl.NAN, step, {"entropy_is_nan": float(math.isnan(entropy))})
        if inf:
            new += self._fire(HEALTH_FLAG, fl.INF, step, {})
        return new

    def observe_token(self, token: int, surprisal: float = math.nan) -> list[Firing]:
        """The token chosen at the latest observed step, and its surprisal (bits)."""
        if self.ended or self.tokens >= self.steps:
            return []
        step = self.tokens
        self.tokens += 1
        similarity = self._similarity[-1 - (self.steps - self.tokens)]
        if math.isfinite(surprisal):
            _push(self._surprisal, surprisal)
        new: list[Firing] = []
        assert self._repetition is not None
        if self._repetition.update(token, similarity):
            new += self._fire(HEALTH_FLAG, fl.REPETITION_LOOP, step, dict(self._repetition.evidence))
        if self.early_warning:
            # margin_declining compares the first and the last margins: past 10, pass both ends.
            margin = (
                self._margin if self._margin_count < _TAIL else self._margin_head + self._margin[-ew.WINDOW :]
            )
            for name in ew.detect(self._entropy, margin, self._surprisal, self.high_entropy_threshold_bits):
                new += self._fire(EARLY_WARNING, name, step, self._evidence(name))
        if token in self.eos_token_ids:
            self.ended = True
        return new

    def _evidence(self, name: str) -> dict[str, float]:
        window = ew.WINDOW
        if name in (ew.MARGIN_COLLAPSED, ew.MARGIN_DECLINING):
            return {"margin_last_mean": list_mean(self._margin[-window:])}
        if name == ew.SURPRISAL_VOLATILE:
            return {"surprisal_last_mean": list_mean(self._surprisal[-window:])}
        return {"entropy_last_mean": list_mean(self._entropy[-window:])}

    def _fire(self, kind: str, name: str, step: int, evidence: dict[str, float]) -> list[Firing]:
        if name in self._fired:
            return []
        self._fired.add(name)
        firing = Firing(kind, name, step, evidence, self.clock(step) if self.clock else time.time_ns())
        self.firings.append(firing)
        return [firing]


def _push(tail: list[float], value: float) -> None:
    """Append ``value`` and keep the last ``_TAIL`` values."""
    tail.append(value)
    if len(tail) > _TAIL:
        del tail[0]


class _Observer(Protocol):
    def observe_step(
        self, entropy: float, margin: float, similarity: float = ..., nan: bool = ..., inf: bool = ...
    ) -> list[Any]: ...

    def observe_token(self, token: int, surprisal: float = ...) -> list[Any]: ...


_M = TypeVar("_M", bound=_Observer)


def replay(
    monitor: _M,
    entropy: np.ndarray,
    margin: np.ndarray,
    surprisal: np.ndarray,
    similarity: np.ndarray | None,
    nan: np.ndarray,
    inf: np.ndarray,
    tokens: Sequence[int],
) -> _M:
    """Feed a fresh monitor one sequence's finished steps, as it would have seen them live, and
    return it (its ``firings`` are then those of a live run). ``nan`` / ``inf``: per step, whether a
    hidden state held one (a NaN entropy counts as NaN too); ``similarity``: the
    ``hidden.max_similarity`` series, ``None`` below the ``hidden`` level."""
    n = len(entropy)
    similar = np.full(n, np.nan) if similarity is None else np.asarray(similarity, dtype=np.float64)
    nan = np.asarray(nan, dtype=bool) | np.isnan(np.asarray(entropy, dtype=np.float64))
    values = zip(
        np.asarray(entropy, dtype=np.float64).tolist(),
        np.asarray(margin, dtype=np.float64).tolist(),
        similar.tolist(),
        nan.tolist(),
        np.asarray(inf, dtype=bool).tolist(),
        strict=True,
    )
    for step, (e, m, s, is_nan, is_inf) in enumerate(values):
        monitor.observe_step(e, m, s, is_nan, is_inf)
        if step < len(tokens):
            monitor.observe_token(tokens[step], float(surprisal[step]))
    return monitor
