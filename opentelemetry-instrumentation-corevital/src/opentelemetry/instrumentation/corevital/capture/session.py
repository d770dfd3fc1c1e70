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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from .. import report as rep
from .. import semconv as sc
from ..config import CaptureLevel
from ..generation import GenerationOutcome, GenerationRequest
from ..report import Intervention
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


#: How many earlier last-layer states the repetition similarity looks back over (bounded memory).
SIMILARITY_WINDOW = 256


class StepObserver(Protocol):
    """What the session feeds, per batch row, as the steps arrive (``signals.SequenceMonitor``)."""

    ended: bool

    def observe_step(
        self, entropy: float, margin: float, similarity: float = ..., nan: bool = ..., inf: bool = ...
    ) -> list[Any]: ...

    def observe_token(self, token: int, surprisal: float = ...) -> list[Any]: ...

    def fired(self, name: str) -> bool: ...


class CaptureError(RuntimeError):
    """The forward outputs were not what the capture expected (reported, never raised to users)."""


@dataclass
class StepTiming:
    """Wall-clock marks of one call (``time.perf_counter`` seconds; step times in Unix ns)."""

    started: float
    first_token: float | None = None
    forwards: int = 0
    step_times_ns: list[int] = field(default_factory=list)


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
        make_observer: builds the streaming observer of one batch row (``None``: no streaming).
        stop_on: signal names that stop the sequence they fire in (through :meth:`stop_mask`).
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
        make_observer: Callable[[], StepObserver] | None = None,
        stop_on: Collection[str] = (),
        profile: Any = None,
    ) -> None:
        self.model = model
        self.request = request
        self.profile = profile  # the model profile the call runs with (for the signals)
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
        self._prev_probs: torch.Tensor | None = None
        self._prev_last: torch.Tensor | None = None
        self._layers = 0
        self._hidden_size = 0
        self._attention_layers = 0
        self.attention_heads = 0
        self._added: tuple[str, ...] = ()
        # Streaming: one observer per row (not under beam search, whose rows change meaning).
        self._make_observer = make_observer if request.num_beams <= 1 else None
        self.observers: list[StepObserver] = []
        self.stop_on = frozenset(stop_on)
        self.interventions: dict[int, Intervention] = {}
        self._token_pending = False  # the newest step's token is not yet observed
        self._pending: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._states: torch.Tensor | None = None  # [rows, window, hidden] unit vectors, ring buffer
        self._state_count = 0
        self.overhead = 0.0  # seconds spent in CoreVital's hooks and criterion during the call

    # -- hooks ---------------------------------------------------------------------------------
    def before_forward(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Ask the forward for the tensors the capture level needs and the caller did not."""
        if self.level is None or self.error is not None:
            return None
        started = time.perf_counter()
        added: list[str] = []
        if self.level.captures_hidden and not kwargs.get("output_hidden_states"):
            kwargs["output_hidden_states"] = True
            added.extend(_HIDDEN_KEYS)
        if self.level.captures_attention and not kwargs.get("output_attentions"):
            kwargs["output_attentions"] = True
            added.extend(_ATTENTION_KEYS)
        self._added = tuple(added)
        self.overhead += time.perf_counter() - started
        return (args, kwargs) if added else None

    def after_forward(self, kwargs: dict[str, Any], output: Any) -> None:
        """Summarise one forward's outputs, then drop what only the capture asked for."""
        started = time.perf_counter()
        self.timing.forwards += 1
        try:
            if self._skip > 0:  # an earlier chunk of a chunked prefill: not a decoding step
                self._skip -= 1
                return
            if self.timing.first_token is None:
                self.timing.first_token = time.perf_counter()
            if self.level is None or self.error is not None:
                return
            self.timing.step_times_ns.append(time.time_ns())
            self._summarize(kwargs, output)
        except Exception as exc:
            self._fail(exc)
        finally:
            if self._added:
                _drop_outputs(output, self._added)
                self._added = ()
            self.overhead += time.perf_counter() - started

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self._steps.clear()
            self._surprisal.clear()
            self._prev_probs = self._prev_last = None
            if self._on_error is not None:
                self._on_error(exc)

    def _summarize(self, kwargs: dict[str, Any], output: Any) -> None:
        assert self.level is not None
        encoder_decoder = self.request.is_encoder_decoder
        logits = getattr(output, "logits", None)
        if not isinstance(logits, torch.Tensor):
            raise CaptureError(f"{type(output).__name__} has no logits")
        last_logits = logits[:, -1] if logits.dim() == 3 else logits
        packed_logits, probs = summarize_logits(last_logits)
        ids = kwargs.get("decoder_input_ids" if encoder_decoder else "input_ids")
        previous_tokens = ids[:, -1] if isinstance(ids, torch.Tensor) and self._token_pending else None
        pending_surprisal = None
        if previous_tokens is not None and self._prev_probs is not None:
            pending_surprisal = chosen_token_surprisal(self._prev_probs, previous_tokens)
            self._surprisal.append(pending_surprisal)
        self._pending = (previous_tokens, pending_surprisal)
        self._prev_probs = probs if self._track_surprisal else None
        similarity = None
        parts = [packed_logits]
        if self.level.captures_hidden:
            hidden = getattr(output, "decoder_hidden_states" if encoder_decoder else "hidden_states", None)
            if not hidden:
                raise CaptureError("the forward returned no hidden states")
            layers = last_position_layers(hidden)
            self._layers, self._hidden_size = int(layers.shape[0]), int(layers.shape[-1])
            parts.append(summarize_hidden(layers).flatten(1))
            if self.request.num_beams <= 1:  # beam rows change meaning between steps
                similarity, previous = self._similarities(layers[-1])
                parts.append(previous[:, None])
                parts.append(similarity[:, None])
            else:
                last = layers[-1].clone()
                parts.append(cosine_to_previous(last, self._prev_last)[:, None])
                self._prev_last = last
                parts.append(torch.full_like(parts[-1], float("nan")))
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
            self.attention_heads = int(next(a for a in attentions if a is not None).shape[1])
            parts.append(summary.flatten(1))
        self._steps.append(torch.cat(parts, dim=1))
        if self._make_observer is not None:
            self._stream_step(packed_logits, similarity, parts[1] if len(parts) > 1 else None)
        self._token_pending = True

    # -- streaming -----------------------------------------------------------------------------
    def _similarities(self, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: the max cosine of the state to its states two or more steps back, and the
        cosine to the previous step's, from one product with a ring buffer of unit vectors."""
        unit = torch.nn.functional.normalize(last.float(), dim=-1)
        rows, width = unit.shape
        nan = torch.full((rows,), float("nan"), device=unit.device)
        if self._states is None or self._states.shape[0] != rows:
            self._states = torch.zeros(rows, SIMILARITY_WINDOW, width, device=unit.device)
            self._state_count = 0
        filled = min(self._state_count, SIMILARITY_WINDOW)
        newest = (self._state_count - 1) % SIMILARITY_WINDOW
        similarity, previous = nan, nan
        if filled >= 1:
            cosines = torch.bmm(self._states[:, :filled], unit[:, :, None]).squeeze(-1)
            previous = cosines[:, newest].clone()
            if filled >= 2:
                cosines[:, newest] = -2.0  # the previous step does not count
                similarity = cosines.amax(dim=-1)
        self._states[:, self._state_count % SIMILARITY_WINDOW] = unit
        self._state_count += 1
        return similarity, previous

    def _stream_step(
        self,
        packed_logits: torch.Tensor,
        similarity: torch.Tensor | None,
        hidden: torch.Tensor | None,
    ) -> None:
        """Feed the observers: the previous step's token (if not yet seen) and this step's values,
        in one device -> host transfer."""
        rows = packed_logits.shape[0]
        if not self.observers:
            self.observers = [self._make_observer() for _ in range(rows)]  # type: ignore[misc]
        nan = torch.isnan(packed_logits[:, 0])
        inf = torch.zeros_like(nan)
        if hidden is not None and self._layers:
            per_layer = hidden.view(rows, self._layers, _N_HIDDEN)
            nan = nan | (per_layer[:, :, HIDDEN_LAYER_FIELDS.index("nan_count")].sum(dim=-1) > 0)
            inf = per_layer[:, :, HIDDEN_LAYER_FIELDS.index("inf_count")].sum(dim=-1) > 0
        if similarity is None:
            similarity = torch.full((rows,), float("nan"), device=packed_logits.device)
        tokens, surprisal = self._pending
        columns = [packed_logits[:, 0], packed_logits[:, 1], similarity.to(packed_logits.device), nan, inf]
        if tokens is not None:
            if surprisal is None:
                surprisal = torch.full((rows,), float("nan"), device=packed_logits.device)
            columns += [tokens.to(packed_logits.device, torch.float32), surprisal]
        host = torch.stack([c.float() for c in columns], dim=-1).tolist()
        for row, values in enumerate(host):
            observer = self.observers[row]
            if tokens is not None:
                observer.observe_token(int(values[5]), values[6])
            observer.observe_step(values[0], values[1], values[2], bool(values[3]), bool(values[4]))

    def _observe_tokens(self, tokens: torch.Tensor) -> None:
        """The tokens of the newest step are known (from the stopping criterion or the result)."""
        if not self._token_pending or not self.observers:
            return
        surprisal = (
            chosen_token_surprisal(self._prev_probs, tokens)
            if self._prev_probs is not None
            else torch.full(tokens.shape, float("nan"))
        )
        self._surprisal.append(surprisal)
        host = torch.stack((tokens.float().to(surprisal.device), surprisal.float()), dim=-1).tolist()
        for observer, (token, value) in zip(self.observers, host, strict=False):
            observer.observe_token(int(token), value)
        self._token_pending = False

    def stop_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """For the injected stopping criterion: the rows to stop now (one bool per row)."""
        rows = input_ids.shape[0]
        stop = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        if self.error is not None or not self.stop_on or self.level is None:
            return stop
        started = time.perf_counter()
        try:
            self._observe_tokens(input_ids[:, -1])
            step = len(self._steps) - 1
            for row, observer in enumerate(self.observers[:rows]):
                if row in self.interventions:
                    continue
                signal = next((name for name in sorted(self.stop_on) if observer.fired(name)), None)
                if signal is not None:
                    self.interventions[row] = Intervention(row, signal, step)
                    stop[row] = True
        except Exception as exc:
            self._fail(exc)
        self.overhead += time.perf_counter() - started
        return stop

    def apply_interventions(self, outcome: GenerationOutcome) -> None:
        """Sequences CoreVital stopped end at their intervention step, finish reason
        ``corevital.stopped`` (the padding after it is not output)."""
        for row, intervention in self.interventions.items():
            if row < len(outcome.output_lengths):
                outcome.output_lengths[row] = min(outcome.output_lengths[row], intervention.step + 1)
                outcome.finish_reasons[row] = sc.FINISH_REASON_COREVITAL_STOPPED

    # -- end of the call -----------------------------------------------------------------------
    def finalize(self, outcome: GenerationOutcome) -> rep.CaptureReport | None:
        """Build one report per returned sequence; ``None`` when nothing was captured."""
        if self.level is None or self.error is not None:
            return None
        sequences = outcome.sequences
        column = self.request.prompt_length + len(self._steps) - 1
        if (
            self.observers
            and sequences is not None
            and sequences.shape[0] == len(self.observers)
            and column < sequences.shape[1]
        ):
            self._observe_tokens(sequences[:, column])  # the last step's token, never fed back
        steps, self._steps = self._steps, []
        level = self.level.value
        if not steps:
            return rep.CaptureReport(level, [], self._hidden_size, self.attention_heads)
        packed = torch.stack(steps)  # [steps, rows, features]
        total_steps, rows, _ = packed.shape
        surprisal = torch.full((total_steps, rows), float("nan"), device=packed.device)
        if self._surprisal:
            known = torch.stack(self._surprisal[:total_steps])
            surprisal[: known.shape[0]] = known.to(surprisal.device)
        last_column = self.request.prompt_length + total_steps - 1
        if (
            self._prev_probs is not None
            and len(self._surprisal) == total_steps - 1
            and sequences is not None
            and sequences.shape[0] == rows
            and last_column < sequences.shape[1]
        ):
            surprisal[-1] = chosen_token_surprisal(self._prev_probs, sequences[:, last_column]).to(
                surprisal.device
            )
        self._prev_probs = self._prev_last = self._states = None
        self._surprisal.clear()
        # The one device -> host transfer of the series.
        host = torch.cat((packed, surprisal[..., None]), dim=-1).cpu().numpy().astype(np.float64)
        row_of = self._row_mapping(rows, len(outcome.output_lengths))
        reports = [
            self._sequence_report(host, index, row_of[index], outcome)
            for index in range(len(outcome.output_lengths))
        ]
        return rep.CaptureReport(level, reports, self._hidden_size, self.attention_heads)

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
            series[rep.SERIES_HIDDEN_MAX_SIMILARITY] = data[:, offset + width + 1]
            offset += width + 2
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
