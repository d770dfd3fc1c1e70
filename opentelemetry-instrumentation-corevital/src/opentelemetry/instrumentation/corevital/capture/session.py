"""The capture session of one ``generate()`` call: per-forward summaries, reconciled at the end.

Per forward (the first being the prefill) the session summarises the step on the model's device
and appends one packed ``[batch, features]`` float32 tensor; the only other state it keeps across
steps is O(1): the previous step's log-probabilities (to score the token chosen next) and the
previous last-layer vector (for the cosine). The hidden states and attentions it asked the forward
for are dropped from the outputs as soon as they are summarised, so ``generate`` holds exactly the
memory it would hold uninstrumented. At the end, :meth:`CaptureSession.finalize` copies the packed
steps to the host in one transfer and cuts them per returned sequence.
"""

from __future__ import annotations

import collections
import inspect
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import report as rep
from ..config import CaptureLevel
from ..generation import GenerationOutcome, GenerationRequest
from ..summaries import (
    ATTENTION_LAYER_FIELDS,
    HIDDEN_LAYER_FIELDS,
    LOGIT_FIELDS,
    TOP_N_PROBS,
    chosen_token_surprisal,
    cosine_to_previous,
    last_position_layers,
    summarize_attention,
    summarize_hidden,
    summarize_logits,
)

_HIDDEN_KEYS = ("hidden_states", "decoder_hidden_states", "encoder_hidden_states")
_ATTENTION_KEYS = ("attentions", "decoder_attentions", "cross_attentions", "encoder_attentions")
_N_LOGIT = len(LOGIT_FIELDS)
_N_HIDDEN = len(HIDDEN_LAYER_FIELDS)
_N_ATTENTION = len(ATTENTION_LAYER_FIELDS)


class CaptureError(RuntimeError):
    """The forward outputs were not what the capture expected (reported, never raised to users)."""


@dataclass
class StepTiming:
    """Wall-clock marks of one call (``time.perf_counter`` seconds)."""

    started: float
    first_token: float | None = None
    forwards: int = 0


def forward_accepts(model: Any, name: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``name`` (explicitly, or through ``**kwargs``
    of a transformers model, which routes the ``output_*`` flags itself)."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    if name in parameters:
        return True
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return has_var_kw and type(model).__module__.startswith("transformers.")


class CaptureSession:
    """Collects the per-step summaries of one ``generate()`` call on one model.

    Args:
        model: the model whose forwards are summarised (forwards of other models are ignored).
        request: the resolved request (prompt length, beams, chunked prefill).
        level: what to summarise; ``None`` records timing only (unsampled spans pay for nothing
            else).
        collapsed_threshold, focused_threshold: attention head thresholds (model profile).
        on_error: called once with the first exception raised inside the capture; capture then
            stops for the rest of the call and the user's generation goes on untouched.
    """

    def __init__(
        self,
        model: Any,
        request: GenerationRequest,
        level: CaptureLevel | None,
        *,
        collapsed_threshold: float = 0.03,
        focused_threshold: float = 0.9,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.model = model
        self.request = request
        self.timing = StepTiming(started=time.perf_counter())
        self.error: BaseException | None = None
        self._on_error = on_error
        self._collapsed_threshold = collapsed_threshold
        self._focused_threshold = focused_threshold
        self._skip = max(0, request.prefill_forwards - 1)
        if level is not None and level.captures_hidden and not forward_accepts(model, "output_hidden_states"):
            level = CaptureLevel.LOGITS
        if level is CaptureLevel.ATTENTION and not forward_accepts(model, "output_attentions"):
            level = CaptureLevel.HIDDEN
        self.level = level
        # Beam search reorders rows between steps, so the next input row is not the continuation
        # of the same row: chosen-token surprisal is only defined without beams.
        self._track_surprisal = request.num_beams <= 1
        self._steps: list[torch.Tensor] = []
        self._surprisal: list[torch.Tensor] = []
        self._prev_log_probs: torch.Tensor | None = None
        self._prev_last: torch.Tensor | None = None
        self._layers = 0
        self._hidden_size = 0
        self._attention_layers = 0
        self._added: tuple[str, ...] = ()

    # -- hooks ---------------------------------------------------------------------------------
    def before_forward(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Ask the forward for the tensors the capture level needs and the caller did not."""
        if self.level is None or self.error is not None:
            return None
        added: list[str] = []
        if self.level.captures_hidden and not kwargs.get("output_hidden_states"):
            kwargs["output_hidden_states"] = True
            added.extend(_HIDDEN_KEYS)
        if self.level.captures_attention and not kwargs.get("output_attentions"):
            kwargs["output_attentions"] = True
            added.extend(_ATTENTION_KEYS)
        self._added = tuple(added)
        return (args, kwargs) if added else None

    def after_forward(self, kwargs: dict[str, Any], output: Any) -> None:
        """Summarise one forward's outputs, then drop what only the capture asked for."""
        self.timing.forwards += 1
        try:
            if self._skip > 0:  # an earlier chunk of a chunked prefill: not a decoding step
                self._skip -= 1
                return
            if self.timing.first_token is None:
                self.timing.first_token = time.perf_counter()
            if self.level is None or self.error is not None:
                return
            self._summarize(kwargs, output)
        except Exception as exc:
            self._fail(exc)
        finally:
            if self._added:
                _drop_outputs(output, self._added)
                self._added = ()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self._steps.clear()
            self._surprisal.clear()
            self._prev_log_probs = self._prev_last = None
            if self._on_error is not None:
                self._on_error(exc)

    def _summarize(self, kwargs: dict[str, Any], output: Any) -> None:
        assert self.level is not None
        encoder_decoder = self.request.is_encoder_decoder
        logits = getattr(output, "logits", None)
        if not isinstance(logits, torch.Tensor):
            raise CaptureError(f"{type(output).__name__} has no logits")
        last_logits = logits[:, -1] if logits.dim() == 3 else logits
        packed_logits, log_probs = summarize_logits(last_logits)
        ids = kwargs.get("decoder_input_ids" if encoder_decoder else "input_ids")
        if self._track_surprisal:
            if self._prev_log_probs is not None and isinstance(ids, torch.Tensor):
                self._surprisal.append(chosen_token_surprisal(self._prev_log_probs, ids[:, -1]))
            self._prev_log_probs = log_probs
        parts = [packed_logits]
        if self.level.captures_hidden:
            hidden = getattr(output, "decoder_hidden_states" if encoder_decoder else "hidden_states", None)
            if not hidden:
                raise CaptureError("the forward returned no hidden states")
            layers = last_position_layers(hidden)
            self._layers, self._hidden_size = int(layers.shape[0]), int(layers.shape[-1])
            last = layers[-1].clone()
            parts.append(summarize_hidden(layers).flatten(1))
            parts.append(cosine_to_previous(last, self._prev_last)[:, None])
            self._prev_last = last
        if self.level.captures_attention:
            attentions = getattr(output, "decoder_attentions" if encoder_decoder else "attentions", None)
            if not attentions:
                raise CaptureError("the forward returned no attention weights")
            key_lengths = None
            mask = kwargs.get("decoder_attention_mask" if encoder_decoder else "attention_mask")
            key_count = next(a for a in attentions if a is not None).shape[-1]
            if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[-1] == key_count:
                key_lengths = mask.sum(dim=-1)
            self._attention_layers = len(attentions)
            summary = summarize_attention(
                attentions, key_lengths, self._collapsed_threshold, self._focused_threshold
            )
            parts.append(summary.flatten(1))
        self._steps.append(torch.cat(parts, dim=1))

    # -- end of the call -----------------------------------------------------------------------
    def finalize(self, outcome: GenerationOutcome) -> rep.CaptureReport | None:
        """Build one report per returned sequence; ``None`` when nothing was captured."""
        if self.level is None or self.error is not None:
            return None
        steps, self._steps = self._steps, []
        level = self.level.value
        if not steps:
            return rep.CaptureReport(level, [], self._hidden_size)
        packed = torch.stack(steps)  # [steps, rows, features]
        total_steps, rows, _ = packed.shape
        surprisal = torch.full((total_steps, rows), float("nan"), device=packed.device)
        if self._surprisal:
            known = torch.stack(self._surprisal[:total_steps])
            surprisal[: known.shape[0]] = known.to(surprisal.device)
        sequences = outcome.sequences
        last_column = self.request.prompt_length + total_steps - 1
        if (
            self._prev_log_probs is not None
            and len(self._surprisal) == total_steps - 1
            and sequences is not None
            and sequences.shape[0] == rows
            and last_column < sequences.shape[1]
        ):
            surprisal[-1] = chosen_token_surprisal(self._prev_log_probs, sequences[:, last_column]).to(
                surprisal.device
            )
        self._prev_log_probs = self._prev_last = None
        self._surprisal.clear()
        # The one device -> host transfer of the call.
        host = torch.cat((packed, surprisal[..., None]), dim=-1).cpu().numpy().astype(np.float64)
        row_of = self._row_mapping(rows, len(outcome.output_lengths))
        reports = [
            self._sequence_report(host, index, row_of[index], outcome)
            for index in range(len(outcome.output_lengths))
        ]
        return rep.CaptureReport(level, reports, self._hidden_size)

    def _row_mapping(self, rows: int, returned: int) -> list[int]:
        if rows == returned:
            return list(range(returned))
        beams, per_input = self.request.num_beams, self.request.num_return_sequences
        if beams > 1 and returned % per_input == 0 and rows == returned // per_input * beams:
            # Beam search: follow the j-th best running beam of each input.
            return [(j // per_input) * beams + j % per_input for j in range(returned)]
        raise CaptureError(f"{rows} captured rows do not match {returned} returned sequences")

    def _sequence_report(
        self, host: np.ndarray, index: int, row: int, outcome: GenerationOutcome
    ) -> rep.SequenceReport:
        n = min(outcome.output_lengths[index], host.shape[0])
        data = host[:n, row]
        series = {
            rep.SERIES_ENTROPY: data[:, 0],
            rep.SERIES_MARGIN: data[:, 1],
            rep.SERIES_TOPK_MASS: data[:, 2],
            rep.SERIES_TOP1_PROB: data[:, 3],
            rep.SERIES_SURPRISAL: data[:, -1],
        }
        report = rep.SequenceReport(
            index=index,
            output_tokens=outcome.output_lengths[index],
            finish_reason=outcome.finish_reasons[index],
            series=series,
            top_probs=data[:, 3 : 3 + TOP_N_PROBS],
            top_ids=data[:, 3 + TOP_N_PROBS : 3 + 2 * TOP_N_PROBS].astype(np.int64),
        )
        offset = _N_LOGIT
        assert self.level is not None
        if self.level.captures_hidden:
            width = self._layers * _N_HIDDEN
            hidden = data[:, offset : offset + width].reshape(n, self._layers, _N_HIDDEN)
            report.hidden_layers = {name: hidden[:, :, i] for i, name in enumerate(HIDDEN_LAYER_FIELDS)}
            series[rep.SERIES_HIDDEN_L2_NORM] = hidden[:, -1, HIDDEN_LAYER_FIELDS.index("l2_norm")]
            series[rep.SERIES_HIDDEN_COSINE_PREVIOUS] = data[:, offset + width]
            offset += width + 1
        if self.level.captures_attention:
            layers = self._attention_layers
            attention = data[:, offset : offset + layers * _N_ATTENTION].reshape(n, layers, _N_ATTENTION)
            report.attention_layers = {
                name: attention[:, :, i] for i, name in enumerate(ATTENTION_LAYER_FIELDS)
            }
            normalized = attention[:, :, ATTENTION_LAYER_FIELDS.index("entropy_normalized_mean")]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN
                series[rep.SERIES_ATTENTION_ENTROPY_NORMALIZED] = np.nanmean(normalized, axis=1)
            series[rep.SERIES_ATTENTION_COLLAPSED_HEADS] = attention[
                :, :, ATTENTION_LAYER_FIELDS.index("collapsed_heads")
            ].sum(axis=1)
        return report


def _drop_outputs(output: Any, keys: tuple[str, ...]) -> None:
    """Remove the tensors only the capture asked for, so nothing downstream keeps them alive."""
    for key in keys:
        if isinstance(output, collections.OrderedDict) and key in output:
            # ModelOutput forbids ``del``; these keys exist only because the capture asked for them.
            collections.OrderedDict.__delitem__(output, key)
        if getattr(output, key, None) is not None:
            object.__setattr__(output, key, None)
