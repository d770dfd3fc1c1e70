"""Do the early-warning detectors warn *early*? Their firing steps on the cached generations,
against when the failure became visible.

For loops, the failure is visible at the first exact repeat of an 8-gram (``first_repeated_ngram``);
the lead time is that step minus the detector's first firing (positive: it warned before). For short
answers there is no such step, so the question is only whether a firing tells wrong answers from
right ones: the share of wrong and of correct answers it fired on.

A detector has a *measured benefit* here when, on loops, it catches more loops than it raises false
alarms on other long outputs by at least :data:`MIN_YOUDEN` and warns before the loop is visible in
at least half the loops it catches; or, on short answers, it fires on wrong answers more often than
on correct ones by at least :data:`MIN_YOUDEN`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from opentelemetry.instrumentation.corevital.signals.early_warning import SIGNAL_NAMES, scan
from opentelemetry.instrumentation.corevital.signals.repetition import first_repeated_ngram

#: Catch rate minus false-alarm rate a detector needs to count as useful.
MIN_YOUDEN = 0.2


@dataclass
class DetectorRecord:
    """What one detector did on one kind of generation (loops, or short answers)."""

    positives: int = 0
    negatives: int = 0
    fired_positive: int = 0
    fired_negative: int = 0
    leads: list[int] = field(default_factory=list)

    @property
    def catch_rate(self) -> float:
        return self.fired_positive / self.positives if self.positives else math.nan

    @property
    def false_alarm_rate(self) -> float:
        return self.fired_negative / self.negatives if self.negatives else math.nan

    @property
    def youden(self) -> float:
        return self.catch_rate - self.false_alarm_rate

    @property
    def early_share(self) -> float:
        """Share of the caught failures warned about before they were visible (loops only)."""
        return float(np.mean([lead > 0 for lead in self.leads])) if self.leads else math.nan

    def benefit(self, needs_lead: bool) -> bool:
        if math.isnan(self.youden) or self.youden < MIN_YOUDEN:
            return False
        return not needs_lead or (not math.isnan(self.early_share) and self.early_share >= 0.5)


@dataclass
class Generation:
    """The per-step series of one generation and whether (and where) it failed."""

    entropy: np.ndarray
    margin: np.ndarray
    surprisal: np.ndarray
    tokens: Sequence[int]
    failed: bool


def measure(
    generations: Sequence[Generation], threshold_bits: float, loops: bool
) -> dict[str, DetectorRecord]:
    """Every detector's record over ``generations`` (``loops``: measure lead times before the
    first repeated 8-gram)."""
    records = {name: DetectorRecord() for name in SIGNAL_NAMES}
    for generation in generations:
        fired = scan(generation.entropy, generation.margin, generation.surprisal, threshold_bits)
        visible = first_repeated_ngram(list(generation.tokens), 8) if loops and generation.failed else None
        for name, record in records.items():
            if generation.failed:
                record.positives += 1
                if name in fired:
                    record.fired_positive += 1
                    if visible is not None:
                        record.leads.append(visible - fired[name])
            else:
                record.negatives += 1
                record.fired_negative += name in fired
    return records
