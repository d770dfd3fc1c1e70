"""What one ``generate()`` call produced, as plain data (numpy arrays, no torch, no OpenTelemetry).

The capture session builds these; ``signals/`` reads them; ``telemetry/`` writes them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Per-step series: one value per decoding step of one returned sequence.
SERIES_ENTROPY = "entropy"
SERIES_MARGIN = "margin"
SERIES_TOPK_MASS = "topk_mass"
SERIES_TOP1_PROB = "top1_prob"
SERIES_SURPRISAL = "surprisal"
SERIES_HIDDEN_L2_NORM = "hidden.l2_norm"
SERIES_HIDDEN_COSINE_PREVIOUS = "hidden.cosine_previous"
SERIES_HIDDEN_MAX_SIMILARITY = "hidden.max_similarity"
SERIES_ATTENTION_ENTROPY_NORMALIZED = "attention.entropy_normalized"
SERIES_ATTENTION_COLLAPSED_HEADS = "attention.collapsed_heads"


@dataclass
class SequenceReport:
    """The per-step read-out of one returned sequence, cut at its end (EOS or limit).

    Attributes:
        index: position of the sequence in the returned ``sequences``.
        output_tokens: generated tokens of this sequence (the EOS token included).
        finish_reason: ``stop`` (EOS or a stopping criterion) or ``length`` (token limit).
        series: per-step scalars by series name (``SERIES_*``), each of shape ``[steps]``.
        hidden_layers: per-step, per-layer hidden-state statistics by field name
            (``summaries.HIDDEN_LAYER_FIELDS``), each ``[steps, layers]``; empty at ``logits`` level.
        attention_layers: the same for attention (``summaries.ATTENTION_LAYER_FIELDS``); empty
            unless attention is captured.
        top_probs: ``[steps, 5]`` largest next-token probabilities.
        top_ids: ``[steps, 5]`` their token ids (content: exported only with content capture on).
    """

    index: int
    output_tokens: int
    finish_reason: str
    series: dict[str, np.ndarray] = field(default_factory=dict)
    hidden_layers: dict[str, np.ndarray] = field(default_factory=dict)
    attention_layers: dict[str, np.ndarray] = field(default_factory=dict)
    top_probs: np.ndarray | None = None
    top_ids: np.ndarray | None = None

    @property
    def steps(self) -> int:
        """Number of decoding steps summarised for this sequence."""
        values = self.series.get(SERIES_ENTROPY)
        return 0 if values is None else len(values)


@dataclass(frozen=True)
class Intervention:
    """CoreVital stopped one sequence: which signal, at which step (the last token kept)."""

    row: int
    signal: str
    step: int


@dataclass
class CaptureReport:
    """Everything CoreVital summarised for one call.

    Attributes:
        capture_level: the level the call ran at (``logits``, ``hidden``, ``attention``).
        sequences: one report per returned sequence.
        hidden_size: width of the hidden states (for fractions); 0 when not captured.
        attention_heads: attention heads per layer; 0 when attention is not captured.
    """

    capture_level: str
    sequences: list[SequenceReport]
    hidden_size: int = 0
    attention_heads: int = 0
