"""Per-sequence streaming monitor: the detectors that run as the steps arrive.

The capture session feeds one :class:`SequenceMonitor` per batch row with host floats: the step's
logit metrics and NaN/Inf evidence as soon as its forward ran, then the chosen token (and its
surprisal) as soon as it is known. Each detector fires at most once, at the step where it first
holds; the monitor returns those firings so that the caller can record an event, and, when the
user asked for it, stop the sequence.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from . import early_warning as ew
from . import flags as fl
from .repetition import RepetitionDetector

HEALTH_FLAG = fl.HEALTH_FLAG_KIND
EARLY_WARNING = "early_warning"


@dataclass(frozen=True)
class Firing:
    """One detector firing at one step of one sequence."""

    kind: str  # HEALTH_FLAG or EARLY_WARNING
    name: str
    step: int
    evidence: dict[str, float]
    time_unix_nano: int


@dataclass
class SequenceMonitor:
    """Streaming detectors of one sequence (NaN/Inf, repetition loop, early warning).

    Args:
        high_entropy_threshold_bits: the profile's entropy threshold (entropy/margin divergence).
        repetition_ngram, repetition_similarity_threshold: see :class:`RepetitionDetector`.
        eos_token_ids: a sequence ends at its first EOS; nothing after it is observed.
    """

    high_entropy_threshold_bits: float = 4.0
    repetition_ngram: int = 8
    repetition_similarity_threshold: float = 0.0
    eos_token_ids: tuple[int, ...] = ()
    firings: list[Firing] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    surprisal: list[float] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)
    ended: bool = False
    _fired: set[str] = field(default_factory=set)
    _repetition: RepetitionDetector | None = None

    def __post_init__(self) -> None:
        self._repetition = RepetitionDetector(self.repetition_ngram, self.repetition_similarity_threshold)

    def fired(self, name: str) -> bool:
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
        step = len(self.entropy)
        self.entropy.append(entropy)
        self.margin.append(margin)
        self.similarity.append(similarity)
        new: list[Firing] = []
        if nan or math.isnan(entropy):
            new += self._fire(HEALTH_FLAG, fl.NAN, step, {"entropy_is_nan": float(math.isnan(entropy))})
        if inf:
            new += self._fire(HEALTH_FLAG, fl.INF, step, {})
        return new

    def observe_token(self, token: int, surprisal: float = math.nan) -> list[Firing]:
        """The token chosen at the latest observed step, and its surprisal (bits)."""
        if self.ended or len(self.surprisal) >= len(self.entropy):
            return []
        step = len(self.surprisal)
        self.surprisal.append(surprisal)
        new: list[Firing] = []
        assert self._repetition is not None
        if self._repetition.update(token, self.similarity[step]):
            new += self._fire(HEALTH_FLAG, fl.REPETITION_LOOP, step, dict(self._repetition.evidence))
        for name in ew.detect(self.entropy, self.margin, self.surprisal, self.high_entropy_threshold_bits):
            new += self._fire(EARLY_WARNING, name, step, self._evidence(name))
        if token in self.eos_token_ids:
            self.ended = True
        return new

    def _evidence(self, name: str) -> dict[str, float]:
        window = ew.WINDOW
        if name in (ew.MARGIN_COLLAPSED, ew.MARGIN_DECLINING):
            return {"margin_last_mean": _mean(self.margin[-window:])}
        if name == ew.SURPRISAL_VOLATILE:
            return {"surprisal_last_mean": _mean(self.surprisal[-window:])}
        return {"entropy_last_mean": _mean(self.entropy[-window:])}

    def _fire(self, kind: str, name: str, step: int, evidence: dict[str, float]) -> list[Firing]:
        if name in self._fired:
            return []
        self._fired.add(name)
        firing = Firing(kind, name, step, evidence, time.time_ns())
        self.firings.append(firing)
        return [firing]


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
