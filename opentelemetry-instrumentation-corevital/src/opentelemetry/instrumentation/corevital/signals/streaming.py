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
    # Finite values only, for the early-warning windows (what the detectors see after NaN removal).
    _entropy_seen: list[float] = field(default_factory=list)
    _margin_seen: list[float] = field(default_factory=list)
    _surprisal_seen: list[float] = field(default_factory=list)
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
        if math.isfinite(entropy):
            self._entropy_seen.append(entropy)
        if math.isfinite(margin):
            self._margin_seen.append(margin)
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
        if math.isfinite(surprisal):
            self._surprisal_seen.append(surprisal)
        new: list[Firing] = []
        assert self._repetition is not None
        if self._repetition.update(token, self.similarity[step]):
            new += self._fire(HEALTH_FLAG, fl.REPETITION_LOOP, step, dict(self._repetition.evidence))
        for name in self._early_warnings():
            new += self._fire(EARLY_WARNING, name, step, self._evidence(name))
        if token in self.eos_token_ids:
            self.ended = True
        return new

    def _early_warnings(self) -> list[str]:
        """The detectors on the shortest windows that decide them, so a step costs O(1): the last
        8 entropies (three changes of a 5-step moving mean), the first and last 5 margins, the last
        5 surprisals (the detectors only read the ends of each series)."""
        entropy, margin = self._entropy_seen, self._margin_seen
        window = ew.WINDOW
        entropy_window = entropy if len(entropy) < 10 else entropy[-10:]
        margin_window = margin if len(margin) < 10 else margin[:window] + margin[-window:]
        fired = []
        if ew.entropy_accelerating(entropy_window):
            fired.append(ew.ENTROPY_ACCELERATING)
        if ew.margin_collapsed(margin[-window:]):
            fired.append(ew.MARGIN_COLLAPSED)
        if ew.margin_declining(margin_window):
            fired.append(ew.MARGIN_DECLINING)
        if ew.surprisal_volatile(self._surprisal_seen[-window:]):
            fired.append(ew.SURPRISAL_VOLATILE)
        if ew.entropy_margin_divergence(
            entropy[-window:], margin[-window:], self.high_entropy_threshold_bits
        ):
            fired.append(ew.ENTROPY_MARGIN_DIVERGENCE)
        return fired

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
