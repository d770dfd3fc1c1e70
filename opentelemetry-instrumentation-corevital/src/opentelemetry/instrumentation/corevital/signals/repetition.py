"""Repetition-loop detection: the token stream repeats, confirmed by the hidden state (SIGNALS §2)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class RepetitionDetector:
    """Streaming repetition detector for one sequence.

    It fires at the first step whose last ``ngram`` tokens already occurred earlier in the
    sequence while the model's last-layer state is at least ``similarity_threshold`` cosine-similar
    to an earlier step's state (the hidden state returning to where it was is what separates a
    loop from a phrase used twice). Without hidden states, the token evidence alone decides.

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
    _tokens: list[int] = field(default_factory=list)
    _seen: set[tuple[int, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.ngram < 2:
            raise ValueError(f"ngram must be at least 2, got {self.ngram}")

    def update(self, token: int, similarity: float = math.nan) -> bool:
        """Add the next token (and the max cosine of its step's state to earlier states); True
        at the step where the loop is first detected."""
        self._tokens.append(int(token))
        step = len(self._tokens) - 1
        if len(self._tokens) < self.ngram:
            return False
        suffix = tuple(self._tokens[-self.ngram :])
        repeated = suffix in self._seen
        self._seen.add(suffix)
        if self.fired_at is not None or not repeated:
            return False
        if not math.isnan(similarity) and similarity < self.similarity_threshold:
            return False
        self.fired_at = step
        self.evidence = {"ngram": float(self.ngram)}
        if not math.isnan(similarity):
            self.evidence["max_similarity"] = float(similarity)
        return True


def first_repeated_ngram(tokens: Sequence[int] | Iterable[int], n: int = 8) -> int | None:
    """The step (index of its last token) of the first n-gram that already occurred; text-only.

    >>> first_repeated_ngram([1, 2, 1, 2], n=2)
    3
    """
    seen: set[tuple[int, ...]] = set()
    history = list(tokens)
    for end in range(n, len(history) + 1):
        gram = tuple(history[end - n : end])
        if gram in seen:
            return end - 1
        seen.add(gram)
    return None
