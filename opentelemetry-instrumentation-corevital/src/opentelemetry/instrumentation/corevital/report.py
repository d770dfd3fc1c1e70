"""What one ``generate()`` call produced, as plain data (numpy arrays, no torch, no OpenTelemetry).

The capture session builds a :class:`CaptureReport` when the call returns; ``signals/`` reads it and
never reaches back into the session; ``telemetry/`` writes it out. Everything a downstream room needs
about the call is here: the per-step series of every returned sequence, the per-layer statistics,
what the streaming detectors fired while the sequence was generated, what CoreVital stopped, and the
timing of the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Per-step series: one value per decoding step of one returned sequence. The names are the middle
# part of the span attributes that carry them (``corevital.<name>.mean`` …, see docs/semconv.md).
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

#: The kinds of streaming firing.
HEALTH_FLAG = "health_flag"
EARLY_WARNING = "early_warning"


@dataclass(frozen=True)
class Firing:
    """One streaming detector firing at one step of one sequence.

    Attributes:
        kind: :data:`HEALTH_FLAG` or :data:`EARLY_WARNING`.
        name: the flag or early-warning signal name (``sc.FLAG_*`` / ``sc.EARLY_WARNING_*``).
        step: the decoding step (0 = the first generated token) at which it first held.
        evidence: the numbers that made it fire.
        time_unix_nano: when it fired (0 when it was found after the call, not while streaming).
    """

    kind: str
    name: str
    step: int
    evidence: dict[str, float] = field(default_factory=dict)
    time_unix_nano: int = 0


@dataclass(frozen=True)
class Intervention:
    """CoreVital stopped one sequence: which signal, at which step (the last token kept)."""

    row: int
    signal: str
    step: int


@dataclass
class SequenceReport:
    """The per-step read-out of one returned sequence, cut at its end (EOS or limit).

    Attributes:
        index: position of the sequence in the returned ``sequences``.
        output_tokens: generated tokens of this sequence (the EOS token included).
        finish_reason: ``stop`` (EOS or a stopping criterion), ``length`` (token limit) or
            ``corevital.stopped`` (health-aware decoding stopped it).
        series: per-step scalars by series name (``SERIES_*``), each of shape ``[steps]``.
        hidden_layers: per-step, per-layer hidden-state statistics by field name
            (``summaries.HIDDEN_LAYER_FIELDS``), each ``[steps, layers]``; empty at ``logits`` level.
        attention_layers: the same for attention (``summaries.ATTENTION_LAYER_FIELDS``); empty
            unless attention is captured.
        top_probs: ``[steps, 5]`` largest next-token probabilities.
        top_ids: ``[steps, 5]`` their token ids (content: exported only with content capture on).
        tokens: the generated token ids (content: never exported; used for repeated-text evidence).
        prompt_tokens: the prompt's token ids (content: never exported; used to find the first
            generated token that does not repeat the prompt, a risk feature).
        state_projection: ``[steps, PROJECTION_DIMS]``: the middle decoder layer's last-position
            state at each step, randomly projected (``summaries.representation``); ``None`` below
            the ``hidden`` level, under beam search and under continuous batching. Never exported;
            a risk model fitted with the state features reads its spread and its mean.
        firings: what the streaming detectors fired in this sequence while it was generated.
        streamed: whether a streaming monitor watched this sequence (then its early-warning
            detectors already ran; otherwise they run over the finished series).
        intervention: set when CoreVital stopped this sequence.
    """

    index: int
    output_tokens: int
    finish_reason: str
    series: dict[str, np.ndarray] = field(default_factory=dict)
    hidden_layers: dict[str, np.ndarray] = field(default_factory=dict)
    attention_layers: dict[str, np.ndarray] = field(default_factory=dict)
    top_probs: np.ndarray | None = None
    top_ids: np.ndarray | None = None
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    state_projection: np.ndarray | None = None
    firings: list[Firing] = field(default_factory=list)
    streamed: bool = False
    intervention: Intervention | None = None

    @property
    def steps(self) -> int:
        """Number of decoding steps summarised for this sequence."""
        values = self.series.get(SERIES_ENTROPY)
        return 0 if values is None else len(values)


@dataclass
class CaptureReport:
    """Everything CoreVital summarised for one call.

    Attributes:
        capture_level: the level the call ran at (``logits``, ``hidden``, ``attention``).
        sequences: one report per returned sequence (empty when no step was summarised).
        hidden_size: width of the hidden states (for fractions); 0 when not captured.
        attention_heads: attention heads per layer; 0 when attention is not captured.
        step_times_ns: wall-clock time (Unix ns) at the end of each summarised step.
        time_to_first_token: seconds from the start of the call to the end of the prefill forward.
        overhead_seconds: time spent in CoreVital's hooks and stopping criterion during the call.
        unavailable: why a requested level could not be captured for this call (e.g. attention
            weights under a kernel that returns none), by level name.
    """

    capture_level: str
    sequences: list[SequenceReport] = field(default_factory=list)
    hidden_size: int = 0
    attention_heads: int = 0
    step_times_ns: list[int] = field(default_factory=list)
    time_to_first_token: float | None = None
    overhead_seconds: float = 0.0
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def interventions(self) -> list[Intervention]:
        """What CoreVital stopped, by returned sequence."""
        return [s.intervention for s in self.sequences if s.intervention is not None]
