"""Repeated text: one n-gram tracker, used while streaming and over finished token lists.

Repetition-loop detection (docs/signals.md, "Repetition loop") fires when the token stream repeats an
n-gram *and* the model's last-layer state returns to where it was; the repeated-text share is a risk
feature. Both rest on :class:`NgramTracker`, the one implementation of "has this n-gram occurred
before in this sequence".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class NgramTracker:
    """Streams tokens and says, for each one, whether the n-gram ending at it occurred earlier.

    >>> tracker = NgramTracker(2)
    >>> [tracker.add(token) for token in [1, 2, 1, 2]]
    [False, False, False, True]
    """

    n: int
    _tokens: list[int] = field(default_factory=list)
    _seen: set[tuple[int, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"an n-gram needs n >= 1, got {self.n}")

    def add(self, token: int) -> bool:
        """Append ``token``; True when the last ``n`` tokens already occurred as an n-gram."""
        self._tokens.append(int(token))
        if len(self._tokens) < self.n:
            return False
        gram = tuple(self._tokens[-self.n :])
        repeated = gram in self._seen
        self._seen.add(gram)
        return repeated


def repeated_ngrams(tokens: Iterable[int], n: int) -> list[bool]:
    """Per token, whether the n-gram ending at it occurred earlier (False for the first ``n - 1``).

    >>> repeated_ngrams([5, 6, 5, 6, 7], 2)
    [False, False, False, True, False]
    """
    tracker = NgramTracker(n)
    return [tracker.add(token) for token in tokens]


def first_repeated_ngram(tokens: Iterable[int], n: int = 8) -> int | None:
    """The step (index of its last token) of the first n-gram that already occurred; text only.

    >>> first_repeated_ngram([1, 2, 1, 2], n=2)
    3
    """
    return next((step for step, hit in enumerate(repeated_ngrams(tokens, n)) if hit), None)


def ngram_repeat_share(tokens: Iterable[int], n: int = 4) -> float:
    """Share of the n-grams of ``tokens`` that already occurred earlier in them (0 when too short).

    >>> ngram_repeat_share([1, 2, 1, 2, 1, 2], n=2)
    0.6
    """
    hits = repeated_ngrams(tokens, n)[n - 1 :]
    return sum(hits) / len(hits) if hits else 0.0


@dataclass
class RepetitionDetector:
    """Streaming repetition-loop detector for one sequence.

    It fires at the first step whose last ``ngram`` tokens already occurred earlier in the
    sequence while the model's last-layer state is at least ``similarity_threshold`` cosine-similar
    to an earlier step's state (the state returning to where it was is what separates a loop from a
    phrase used twice). Without hidden states (``similarity`` NaN), the token evidence alone decides.

    Example:
        >>> detector = RepetitionDetector(ngram=3)
        >>> [detector.update(token) for token in [5, 6, 7, 8, 5, 6, 7]]
        [False, False, False, False, False, False, True]
        >>> detector.fired_at
        6
    """

    ngram: int = 8
    similarity_threshold: float = 0.0
    fired_at: int | None = None
    evidence: dict[str, float] = field(default_factory=dict)
    _tracker: NgramTracker | None = None
    _step: int = -1

    def __post_init__(self) -> None:
        if self.ngram < 2:
            raise ValueError(f"ngram must be at least 2, got {self.ngram}")
        self._tracker = NgramTracker(self.ngram)

    def update(self, token: int, similarity: float = math.nan) -> bool:
        """Add the next token (and the max cosine of its step's state to earlier states); True
        at the step where the loop is first detected."""
        assert self._tracker is not None
        self._step += 1
        repeated = self._tracker.add(token)
        if self.fired_at is not None or not repeated:
            return False
        if not math.isnan(similarity) and similarity < self.similarity_threshold:
            return False
        self.fired_at = self._step
        self.evidence = {"ngram": float(self.ngram)}
        if not math.isnan(similarity):
            self.evidence["max_similarity"] = float(similarity)
        return True
