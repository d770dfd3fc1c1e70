"""Recording one call's decoding steps on the model's device, and handing them over in one copy.

Per forward (the first being the prefill) :class:`StepRecorder` summarises the step and appends one
packed ``[rows, features]`` float32 tensor (columns named by :class:`~.layout.StepLayout`). The
only other state it keeps across steps is bounded: the previous step's probabilities (to look up
the probability of the token chosen next), a ring of last-layer states (:class:`StateSimilarity`),
and at the ``hidden`` level a block of up to 32 steps' last-position layer states whose statistics
are computed together (:class:`HiddenSummaryBlocks`; step by step when a live watch needs them at
once). :meth:`StepRecorder.finish` fills in what was computed in blocks and copies everything to the
host in one transfer (:class:`Steps`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import CaptureLevel
from ..summaries import (
    HIDDEN_LAYER_FIELDS,
    chosen_probability,
    last_position_layers,
    summarize_attention,
    summarize_hidden,
    summarize_logits,
)
from ..summaries.representation import project_states, representation_layer
from .attention import NOT_THROUGH_INTERFACE, AttentionTap
from .hidden_blocks import HiddenSummaryBlocks
from .layout import StepLayout
from .recording import Steps
from .similarity import StateSimilarity


class CaptureError(RuntimeError):
    """The forward outputs were not what the capture expected (reported, never raised to users)."""


@dataclass(frozen=True)
class Recorded:
    """What the live watch needs of the newest step: its packed row(s) on the device, and the
    tokens of the step before with their probabilities (``None`` when already observed)."""

    packed: torch.Tensor
    tokens: torch.Tensor | None
    chosen: torch.Tensor | None


class StepRecorder:
    """Summarises the forwards of one call (see the module docstring).

    Args:
        level: what to summarise (``ATTENTION`` through ``attention_tap`` or, where the model
            computes them anyway, the weights it returns).
        encoder_decoder: read the decoder's outputs.
        single_beam: rows keep their meaning between steps (no beam search): chosen-token
            probabilities and state revisits are defined.
        every_step: compute the hidden statistics and similarities at every step (a live watch
            reads them) instead of in blocks.
        attention_tap: reads attention through the interface (``None``: from returned weights).
        collapsed_threshold, focused_threshold: attention head thresholds (for returned weights).
        on_unavailable: called with ``(level, reason)`` when a level turns out to be unavailable.
    """

    def __init__(
        self,
        level: CaptureLevel,
        *,
        encoder_decoder: bool = False,
        single_beam: bool = True,
        every_step: bool = False,
        attention_tap: AttentionTap | None = None,
        collapsed_threshold: float = 0.03,
        focused_threshold: float = 0.9,
        on_unavailable: Callable[[str, str], None] | None = None,
    ) -> None:
        self.level = level
        self.attention_tap = attention_tap if level is CaptureLevel.ATTENTION else None
        self.hidden_size = 0
        self.attention_heads = 0
        self.tap_error: BaseException | None = None  # to report (once) as CoreVital's own failure
        self._tap_failed = False
        self._encoder_decoder = encoder_decoder
        self._single_beam = single_beam
        self._every_step = every_step
        self._thresholds = (collapsed_threshold, focused_threshold)
        self._on_unavailable = on_unavailable
        self._layout = StepLayout()
        self._steps: list[torch.Tensor] = []
        self._chosen: list[torch.Tensor] = []  # per step: the probability of the token chosen there
        self._prev_probs: torch.Tensor | None = None
        self._similarity = StateSimilarity()
        self._blocks = HiddenSummaryBlocks()
        self._projected: list[torch.Tensor] = []  # step by step: the middle layer's projected state
        self._nan_columns: torch.Tensor | None = None
        self._token_pending = False  # the newest step's token is not yet observed

    @property
    def steps(self) -> int:
        """Steps recorded so far."""
        return len(self._steps)

    @property
    def layout(self) -> StepLayout:
        """The columns of the recorded steps."""
        return self._layout

    @property
    def weights_wanted(self) -> bool:
        """The forward must return attention weights (the model computes them anyway)."""
        return self.level is CaptureLevel.ATTENTION and self.attention_tap is None

    def lower_to_hidden(self, reason: str) -> None:
        """Attention cannot be read for this call: keep the rest, say why."""
        if self.level is CaptureLevel.ATTENTION:
            self.level = CaptureLevel.HIDDEN
            if self._on_unavailable is not None:
                self._on_unavailable(CaptureLevel.ATTENTION.value, reason)
        self.attention_tap = None

    # -- one forward -----------------------------------------------------------------------------
    def record(self, kwargs: dict[str, Any], output: Any) -> Recorded:
        """Summarise one forward's outputs and keep its packed row."""
        logits = getattr(output, "logits", None)
        if not isinstance(logits, torch.Tensor):
            raise CaptureError(f"{type(output).__name__} has no logits")
        packed_logits, probs = summarize_logits(logits[:, -1] if logits.dim() == 3 else logits)
        ids = kwargs.get("decoder_input_ids" if self._encoder_decoder else "input_ids")
        tokens = ids[:, -1] if isinstance(ids, torch.Tensor) and self._token_pending else None
        chosen = None
        if tokens is not None and self._prev_probs is not None:
            chosen = chosen_probability(self._prev_probs, tokens)
            self._chosen.append(chosen)
        self._prev_probs = probs if self._single_beam else None
        parts = [packed_logits]
        hidden_layers = self._record_hidden(output, parts) if self.level.captures_hidden else 0
        attention_layers = 0
        if self.level.captures_attention:
            attention_layers = self._record_attention(kwargs, output, parts, packed_logits)
        layout = StepLayout(hidden_layers, attention_layers)
        if self._steps and layout != self._layout:
            raise CaptureError(f"the step layout changed from {self._layout} to {layout}")
        self._layout = layout
        packed = torch.cat(parts, dim=1)
        self._steps.append(packed)
        self._token_pending = True
        return Recorded(packed, tokens, chosen)

    def _record_hidden(self, output: Any, parts: list[torch.Tensor]) -> int:
        hidden = getattr(output, "decoder_hidden_states" if self._encoder_decoder else "hidden_states", None)
        if not hidden:
            raise CaptureError("the forward returned no hidden states")
        layers = last_position_layers(hidden)
        count, self.hidden_size = int(layers.shape[0]), int(layers.shape[-1])
        if self._every_step:
            previous, similarity = self._similarity.update(layers[-1])
            self._projected.append(project_states(layers[representation_layer(count)]))
            parts += [summarize_hidden(layers).flatten(1), previous[:, None], similarity[:, None]]
        else:  # statistics and similarities computed in blocks and filled in at the end
            self._similarity.push(layers[-1])
            self._blocks.push(layers)
            parts.append(
                self._placeholder(layers.shape[1], count * len(HIDDEN_LAYER_FIELDS) + 2, layers.device)
            )
        return count

    def _record_attention(
        self, kwargs: dict[str, Any], output: Any, parts: list[torch.Tensor], packed_logits: torch.Tensor
    ) -> int:
        tap = self.attention_tap
        if tap is not None:
            summary = tap.end(packed_logits.shape[0], packed_logits.device)
            failed = f"reading attention failed ({type(tap.error).__name__}: {tap.error})"
            if tap.error is not None and not self._tap_failed:  # reported once, whatever step
                self._tap_failed = True
                self.tap_error = tap.error
                if summary is not None and self._on_unavailable is not None:
                    self._on_unavailable(CaptureLevel.ATTENTION.value, failed + "; the later steps have none")
            if summary is None:  # no layer reported in the first forward
                reason = tap.unsupported or NOT_THROUGH_INTERFACE
                self.lower_to_hidden(failed if tap.error is not None else reason)
                return 0
            self.attention_heads = tap.heads
        else:
            attentions = getattr(
                output, "decoder_attentions" if self._encoder_decoder else "attentions", None
            )
            present = [a for a in attentions or () if a is not None]
            if not present:
                self.lower_to_hidden("the attention kernel returned no attention weights")
                return 0
            attended = None
            mask = kwargs.get("decoder_attention_mask" if self._encoder_decoder else "attention_mask")
            if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[-1] == present[0].shape[-1]:
                attended = mask.to(present[0].device) != 0
            assert attentions is not None
            summary = summarize_attention(attentions, None, *self._thresholds, attended=attended)
            self.attention_heads = int(present[0].shape[1])
        parts.append(summary.flatten(1))
        return int(summary.shape[1])

    def _placeholder(self, rows: int, width: int, device: torch.device) -> torch.Tensor:
        """NaN columns standing for the hidden statistics and similarities until they are computed."""
        cached = self._nan_columns
        if cached is None or cached.shape != (rows, width) or cached.device != device:
            cached = self._nan_columns = torch.full((rows, width), float("nan"), device=device)
        return cached

    def observe_tokens(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """The tokens of the newest step are known (a stopping criterion saw them): their
        probabilities, kept for the series (``None`` when already observed)."""
        if not self._token_pending:
            return None
        chosen = (
            chosen_probability(self._prev_probs, tokens)
            if self._prev_probs is not None
            else torch.full(tokens.shape, float("nan"))
        )
        self._chosen.append(chosen)
        self._token_pending = False
        return chosen

    def record_batched(
        self,
        packed: torch.Tensor,
        layout: StepLayout,
        chosen: torch.Tensor | None,
        state: torch.Tensor | None,
    ) -> None:
        """One step of a single sequence summarised in a packed continuous-batching forward: its
        ``[1, layout.width]`` row, the probability of its token and its last-layer state."""
        if self._steps and layout != self._layout:
            raise CaptureError(f"the step layout changed from {self._layout} to {layout}")
        self._layout = layout
        if state is not None:
            self.hidden_size = int(state.shape[-1])
            if self._every_step:  # the similarities now, for the live watch; in place in this row
                previous, maximum = self._similarity.update(state)
                packed[:, layout.cosine_previous] = previous.to(packed.device)
                packed[:, layout.max_similarity] = maximum.to(packed.device)
            else:
                self._similarity.push(state)
        self._steps.append(packed)
        if chosen is not None:
            self._chosen.append(chosen)

    # -- the end of the call -----------------------------------------------------------------------
    def finish(self, sequences: torch.Tensor | None, prompt_length: int) -> Steps | None:
        """Every step on the host, in one device -> host transfer; ``None`` when no step was
        recorded. ``sequences`` (what ``generate`` returned) give the last step's chosen tokens."""
        steps, self._steps = self._steps, []
        if not steps:
            self.clear()
            return None
        packed = torch.stack(steps)  # [steps, rows, features]
        total, rows, _ = packed.shape
        layout = self._layout
        projected = None
        if layout.hidden_layers and self._single_beam:
            projected = self._blocks.projections() if not self._every_step else _stacked(self._projected)
            if projected is not None and projected.shape[:2] != (total, rows):
                projected = None
        if layout.hidden_layers and not self._every_step:
            summaries = self._blocks.results()
            if summaries is not None and summaries.shape[:2] == (total, rows):
                packed[:, :, layout.hidden] = summaries.to(packed.device)
            similarities = self._similarity.results()
            if similarities is not None and similarities[0].shape[0] == total:
                packed[:, :, layout.cosine_previous] = similarities[0].to(packed.device)
                packed[:, :, layout.max_similarity] = similarities[1].to(packed.device)
        if layout.hidden_layers and not self._single_beam:  # beam rows change meaning between steps
            packed[:, :, layout.max_similarity] = float("nan")
        chosen = torch.full((total, rows), float("nan"), device=packed.device)
        if self._chosen:
            known = torch.stack(self._chosen[:total])
            chosen[: known.shape[0]] = known.to(chosen.device)
        last = prompt_length + total - 1
        if (
            self._prev_probs is not None
            and len(self._chosen) == total - 1
            and sequences is not None
            and sequences.shape[0] == rows
            and last < sequences.shape[1]
        ):
            chosen[-1] = chosen_probability(self._prev_probs, sequences[:, last]).to(chosen.device)
        self.clear()
        parts = [packed, chosen[..., None]]
        if projected is not None:
            parts.append(projected.to(packed.device))
        host = torch.cat(parts, dim=-1).cpu().numpy().astype(np.float64)  # the one transfer
        width = layout.width
        return Steps(
            layout,
            host[..., :width],
            host[..., width],
            host[..., width + 1 :] if projected is not None else None,
        )

    def clear(self) -> None:
        """Forget everything recorded (a failed capture, or the end of the call)."""
        self._steps.clear()
        self._chosen.clear()
        self._prev_probs = None
        self._similarity.clear()
        self._blocks.clear()
        self._projected.clear()


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    return torch.stack(tensors) if tensors else None
