"""The capture session of one ``generate()`` call: per-forward summaries, reconciled at the end.

Per forward (the first being the prefill) the session summarises the step on the model's device
and appends one packed ``[rows, features]`` float32 tensor (columns named by :class:`StepLayout`);
the only other state it keeps across steps is bounded: the previous step's probabilities (to score
the token chosen next), a ring of last-layer states (:class:`StateSimilarity`), at the ``hidden``
level a block of up to 32 steps' last-position layer states whose statistics are computed together
(:class:`HiddenSummaryBlocks`, unless ``stop_on`` needs them at every step) and one streaming monitor
per row. The hidden states and attentions it asked the forward for are dropped from the
outputs as soon as they are summarised, so ``generate`` holds exactly the memory it would hold
uninstrumented. When the call returns, :meth:`CaptureSession.finalize` copies the packed steps to
the host in one transfer and hands over one complete :class:`~..report.CaptureReport`; nothing
downstream reads the session itself.
"""

from __future__ import annotations

import collections
import functools
import inspect
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

import numpy as np
import torch

from .. import report as rep
from .. import semconv as sc
from ..config import CaptureLevel
from ..generation import GenerationOutcome, GenerationRequest
from ..signals._util import nanmean
from ..signals.streaming import replay
from ..summaries import (
    ATTENTION_LAYER_FIELDS,
    HIDDEN_LAYER_FIELDS,
    chosen_probability,
    last_position_layers,
    logit_metrics,
    summarize_attention,
    summarize_hidden,
    summarize_logits,
    surprisal_bits,
)
from ..summaries.representation import project_states, representation_layer
from .hidden_blocks import HiddenSummaryBlocks
from .layout import StepLayout
from .similarity import StateSimilarity

_HIDDEN_KEYS = ("hidden_states", "decoder_hidden_states", "encoder_hidden_states")
_ATTENTION_KEYS = ("attentions", "decoder_attentions", "cross_attentions", "encoder_attentions")
_NAN_COUNT = HIDDEN_LAYER_FIELDS.index("nan_count")
_INF_COUNT = HIDDEN_LAYER_FIELDS.index("inf_count")


class StepMonitor(Protocol):
    """What the session feeds, per batch row, as the steps arrive (``signals.SequenceMonitor``)."""

    firings: list[rep.Firing]
    clock: Callable[[int], int] | None

    def observe_step(
        self, entropy: float, margin: float, similarity: float = ..., nan: bool = ..., inf: bool = ...
    ) -> list[Any]: ...

    def observe_token(self, token: int, surprisal: float = ...) -> list[Any]: ...

    def fired(self, name: str) -> bool: ...


class CaptureError(RuntimeError):
    """The forward outputs were not what the capture expected (reported, never raised to users)."""


def forward_accepts(model: Any, name: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``name`` (explicitly, or through ``**kwargs``
    of a transformers model, which routes the ``output_*`` flags itself)."""
    forward = getattr(type(model), "forward", None)
    if forward is None or "forward" in vars(model):
        return _accepts(getattr(model, "forward", None), type(model).__module__, name)  # patched per instance
    return _accepts_cached(forward, type(model).__module__, name)


@functools.lru_cache(maxsize=256)
def _accepts_cached(forward: Any, module: str, name: str) -> bool:
    return _accepts(forward, module, name)


def _accepts(forward: Any, module: str, name: str) -> bool:
    try:
        parameters = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False
    if name in parameters:
        return True
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return has_var_kw and module.startswith("transformers.")


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
        make_monitor: builds the streaming monitor of one batch row (``None``: no streaming).
        stop_on: signal names that stop the sequence they fire in (through :meth:`stop_mask`).
        unavailable: levels that cannot be captured for this call, with the reason (the level is
            lowered accordingly and the reason reported).
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
        make_monitor: Callable[[], StepMonitor] | None = None,
        stop_on: Collection[str] = (),
        unavailable: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.request = request
        self.started = time.perf_counter()
        self.error: BaseException | None = None
        self.overhead = 0.0  # seconds spent in CoreVital's hooks and criterion during the call
        self.stop_on = frozenset(stop_on)
        self._unavailable = dict(unavailable or {})
        self._on_error = on_error
        self._collapsed_threshold = collapsed_threshold
        self._focused_threshold = focused_threshold
        self._skip = max(0, request.prefill_forwards - 1)
        if level is not None and level.captures_hidden and not forward_accepts(model, "output_hidden_states"):
            self._unavailable[CaptureLevel.HIDDEN.value] = "the model's forward has no output_hidden_states"
            level = CaptureLevel.LOGITS
        if level is CaptureLevel.ATTENTION and not forward_accepts(model, "output_attentions"):
            self._unavailable[CaptureLevel.ATTENTION.value] = "the model's forward has no output_attentions"
            level = CaptureLevel.HIDDEN
        if level is CaptureLevel.ATTENTION and CaptureLevel.ATTENTION.value in self._unavailable:
            level = CaptureLevel.HIDDEN
        self.level = level
        # Beam search reorders rows between steps, so the next input row is not the continuation
        # of the same row: chosen-token surprisal, state revisits and streaming are only defined
        # without beams.
        self._single_beam = request.num_beams <= 1
        self._make_monitor = make_monitor if self._single_beam else None
        # Monitors run live, step by step, only when they may stop a sequence (stop_on); otherwise
        # the same monitors are replayed over the finished series, which gives the same firings
        # without a device -> host transfer and Python work at every step.
        self._live = bool(self.stop_on) and self._make_monitor is not None
        self._monitors: list[StepMonitor] = []
        self._interventions: dict[int, rep.Intervention] = {}
        self._layout = StepLayout()
        self._steps: list[torch.Tensor] = []
        self._chosen: list[torch.Tensor] = []  # per step: the probability of the token chosen there
        self._prev_probs: torch.Tensor | None = None
        self._similarity = StateSimilarity()
        self._hidden_blocks = HiddenSummaryBlocks()
        self._projected: list[torch.Tensor] = []  # live: the middle layer's projected state per step
        self._nan_columns: torch.Tensor | None = None
        self._hidden_size = 0
        self._attention_heads = 0
        self._added: tuple[str, ...] = ()
        self._token_pending = False  # the newest step's token is not yet observed
        self._pending: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._first_token: float | None = None
        self._step_times_ns: list[int] = []

    def without_attention(self, reason: str) -> None:
        """Attention cannot be captured for this call (say why on the span); keep the rest."""
        if self.level is CaptureLevel.ATTENTION:
            self.level = CaptureLevel.HIDDEN
            self._unavailable[CaptureLevel.ATTENTION.value] = reason

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
        try:
            if self._skip > 0:  # an earlier chunk of a chunked prefill: not a decoding step
                self._skip -= 1
                return
            if self._first_token is None:
                self._first_token = started
            if self.level is None or self.error is not None:
                return
            self._step_times_ns.append(time.time_ns())
            self._summarize(kwargs, output)
        except Exception as exc:
            self._fail(exc)
        finally:
            if self._added:
                drop_outputs(output, self._added)
                self._added = ()
            self.overhead += time.perf_counter() - started

    def add_batched_step(
        self,
        at: float,
        packed: torch.Tensor | None = None,
        layout: StepLayout | None = None,
        chosen: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        token: int | None = None,
    ) -> None:
        """One decoding step of this call's single sequence, summarised together with other
        sequences' in a packed forward (continuous batching, ``batching.BatchStep``).

        Args:
            at: ``time.perf_counter()`` when the step's token was produced.
            packed: this sequence's ``[1, layout.width]`` row of the step (``None``: timing only).
            layout: the columns of ``packed``.
            chosen: ``[1]`` probability of the token sampled at this step.
            state: ``[1, hidden]`` last-layer state (for the state similarities), with hidden states.
            token: the token sampled at this step (fed to the streaming monitor with ``stop_on``).
        """
        if self._first_token is None:
            self._first_token = at
        if self.level is None or self.error is not None or packed is None or layout is None:
            return
        started = time.perf_counter()
        try:
            if self._steps and layout != self._layout:
                raise CaptureError(f"the step layout changed from {self._layout} to {layout}")
            self._layout = layout
            self._step_times_ns.append(time.time_ns())
            if state is not None:
                self._hidden_size = int(state.shape[-1])
                if self._live:  # the similarities now, for the monitor; in place in this row
                    previous, maximum = self._similarity.update(state)
                    packed[:, layout.cosine_previous] = previous.to(packed.device)
                    packed[:, layout.max_similarity] = maximum.to(packed.device)
                else:
                    self._similarity.push(state)
            self._steps.append(packed)
            if chosen is not None:
                self._chosen.append(chosen)
            if self._live:
                self._stream_batched(packed, layout, chosen, token)
        except Exception as exc:
            self._fail(exc)
        self.overhead += time.perf_counter() - started

    def _stream_batched(
        self, packed: torch.Tensor, layout: StepLayout, chosen: torch.Tensor | None, token: int | None
    ) -> None:
        """Feed this sequence's monitor one batched step (``stop_on``): one device -> host transfer."""
        if not self._monitors:
            assert self._make_monitor is not None
            self._monitors = [self._make_monitor()]
        host = packed[0].float().cpu().numpy()
        metrics = logit_metrics(host[None, layout.logits])
        entropy = float(metrics["entropy"][0])
        nan = inf = False
        similarity = float("nan")
        if layout.hidden_layers:
            hidden = host[layout.hidden].reshape(layout.hidden_layers, len(HIDDEN_LAYER_FIELDS))
            nan, inf = bool(hidden[:, _NAN_COUNT].sum() > 0), bool(hidden[:, _INF_COUNT].sum() > 0)
            similarity = float(host[layout.max_similarity])
        monitor = self._monitors[0]
        monitor.observe_step(entropy, float(metrics["margin"][0]), similarity, nan or np.isnan(entropy), inf)
        if token is not None:
            probability = np.array([float(chosen[0]) if chosen is not None else np.nan])
            monitor.observe_token(int(token), float(surprisal_bits(probability)[0]))

    def batched_stop(self) -> bool:
        """After :meth:`add_batched_step`: whether a ``stop_on`` signal fired in this call's single
        sequence at this step (the intervention is recorded, as :meth:`stop_mask` does)."""
        if self.error is not None or not self._live or not self._monitors or 0 in self._interventions:
            return False
        monitor = self._monitors[0]
        signal = next((name for name in sorted(self.stop_on) if monitor.fired(name)), None)
        if signal is None:
            return False
        self._interventions[0] = rep.Intervention(0, signal, len(self._steps) - 1)
        return True

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self._steps.clear()
            self._chosen.clear()
            self._prev_probs = None
            self._similarity.clear()
            self._projected.clear()
            if self._on_error is not None:
                self._on_error(exc)

    def _summarize(self, kwargs: dict[str, Any], output: Any) -> None:
        assert self.level is not None
        encoder_decoder = self.request.is_encoder_decoder
        logits = getattr(output, "logits", None)
        if not isinstance(logits, torch.Tensor):
            raise CaptureError(f"{type(output).__name__} has no logits")
        packed_logits, probs = summarize_logits(logits[:, -1] if logits.dim() == 3 else logits)
        ids = kwargs.get("decoder_input_ids" if encoder_decoder else "input_ids")
        previous_tokens = ids[:, -1] if isinstance(ids, torch.Tensor) and self._token_pending else None
        chosen = None
        if previous_tokens is not None and self._prev_probs is not None:
            chosen = chosen_probability(self._prev_probs, previous_tokens)
            self._chosen.append(chosen)
        self._pending = (previous_tokens, chosen)
        self._prev_probs = probs if self._single_beam else None
        parts = [packed_logits]
        hidden_layers = attention_layers = 0
        similarity = None
        hidden_summary = None
        if self.level.captures_hidden:
            hidden = getattr(output, "decoder_hidden_states" if encoder_decoder else "hidden_states", None)
            if not hidden:
                raise CaptureError("the forward returned no hidden states")
            layers = last_position_layers(hidden)
            hidden_layers, self._hidden_size = int(layers.shape[0]), int(layers.shape[-1])
            if self._live:
                hidden_summary = summarize_hidden(layers)
                previous, similarity = self._similarity.update(layers[-1])
                self._projected.append(project_states(layers[representation_layer(hidden_layers)]))
                parts += [hidden_summary.flatten(1), previous[:, None], similarity[:, None]]
            else:  # statistics and similarities computed in blocks and filled in at the end
                self._similarity.push(layers[-1])
                self._hidden_blocks.push(layers)
                width = hidden_layers * len(HIDDEN_LAYER_FIELDS) + 2
                parts.append(self._placeholder(layers.shape[1], width, layers.device))
        if self.level.captures_attention:
            attentions = getattr(output, "decoder_attentions" if encoder_decoder else "attentions", None)
            present = [a for a in attentions or () if a is not None]
            if not present:
                # A kernel that returns no weights: keep the hidden level, say why on the span.
                self._unavailable[CaptureLevel.ATTENTION.value] = (
                    "the attention kernel returned no attention weights"
                )
                self.level = CaptureLevel.HIDDEN
            else:
                key_lengths = None
                mask = kwargs.get("decoder_attention_mask" if encoder_decoder else "attention_mask")
                if (
                    isinstance(mask, torch.Tensor)
                    and mask.dim() == 2
                    and mask.shape[-1] == present[0].shape[-1]
                ):
                    key_lengths = mask.sum(dim=-1)
                assert attentions is not None
                attention_layers = len(attentions)
                summary = summarize_attention(
                    attentions, key_lengths, self._collapsed_threshold, self._focused_threshold
                )
                self._attention_heads = int(present[0].shape[1])
                parts.append(summary.flatten(1))
        layout = StepLayout(hidden_layers, attention_layers)
        if self._steps and layout != self._layout:
            raise CaptureError(f"the step layout changed from {self._layout} to {layout}")
        self._layout = layout
        self._steps.append(torch.cat(parts, dim=1))
        if self._live:
            self._stream_step(packed_logits, similarity, hidden_summary)
        self._token_pending = True

    def _placeholder(self, rows: int, width: int, device: torch.device) -> torch.Tensor:
        """NaN columns standing for the hidden-state statistics and similarities until they are
        computed (reused)."""
        cached = self._nan_columns
        if cached is None or cached.shape != (rows, width) or cached.device != device:
            cached = self._nan_columns = torch.full((rows, width), float("nan"), device=device)
        return cached

    # -- streaming (live, with stop_on) ---------------------------------------------------------
    def _stream_step(
        self, packed_logits: torch.Tensor, similarity: torch.Tensor | None, hidden: torch.Tensor | None
    ) -> None:
        """Feed the monitors: the previous step's token (if not yet seen) and this step's values,
        in one device -> host transfer."""
        rows = packed_logits.shape[0]
        if not self._monitors:
            assert self._make_monitor is not None
            self._monitors = [self._make_monitor() for _ in range(rows)]
        device = packed_logits.device
        nan = torch.zeros(rows, device=device)
        inf = torch.zeros(rows, device=device)
        if hidden is not None:  # [rows, layers, fields]
            nan = hidden[:, :, _NAN_COUNT].sum(dim=-1)
            inf = hidden[:, :, _INF_COUNT].sum(dim=-1)
        if similarity is None:
            similarity = torch.full((rows,), float("nan"), device=device)
        tokens, chosen = self._pending
        columns = [similarity.to(device), nan, inf]
        if tokens is not None:
            if chosen is None:
                chosen = torch.full((rows,), float("nan"), device=device)
            columns += [tokens.to(device, torch.float32), chosen]
        host = torch.cat((packed_logits, torch.stack(columns, dim=-1).float()), dim=-1).cpu().numpy()
        extra = host[:, packed_logits.shape[1] :]
        metrics = logit_metrics(host[:, : packed_logits.shape[1]])
        surprisal = surprisal_bits(extra[:, 4]) if tokens is not None else None
        for row, monitor in enumerate(self._monitors):
            if surprisal is not None:
                monitor.observe_token(int(extra[row, 3]), float(surprisal[row]))
            entropy = float(metrics["entropy"][row])
            monitor.observe_step(
                entropy, float(metrics["margin"][row]), float(extra[row, 0]),
                bool(extra[row, 1] > 0 or np.isnan(entropy)), bool(extra[row, 2] > 0),
            )  # fmt: skip

    def _observe_tokens(self, tokens: torch.Tensor) -> None:
        """The tokens of the newest step are known (from the stopping criterion or the result)."""
        if not self._token_pending or not self._monitors:
            return
        chosen = (
            chosen_probability(self._prev_probs, tokens)
            if self._prev_probs is not None
            else torch.full(tokens.shape, float("nan"))
        )
        self._chosen.append(chosen)
        host = torch.stack((tokens.float().to(chosen.device), chosen.float()), dim=-1).cpu().numpy()
        for monitor, token, surprisal in zip(
            self._monitors, host[:, 0], surprisal_bits(host[:, 1]), strict=False
        ):
            monitor.observe_token(int(token), float(surprisal))
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
            for row, monitor in enumerate(self._monitors[:rows]):
                if row in self._interventions:
                    continue
                signal = next((name for name in sorted(self.stop_on) if monitor.fired(name)), None)
                if signal is not None:
                    self._interventions[row] = rep.Intervention(row, signal, step)
                    stop[row] = True
        except Exception as exc:
            self._fail(exc)
        self.overhead += time.perf_counter() - started
        return stop

    # -- end of the call -----------------------------------------------------------------------
    @property
    def time_to_first_token(self) -> float | None:
        """Seconds from the start of the call to the end of the prefill forward."""
        return None if self._first_token is None else self._first_token - self.started

    def apply_interventions(self, outcome: GenerationOutcome) -> None:
        """Sequences CoreVital stopped end at their intervention step, finish reason
        ``corevital.stopped`` (the padding after it is not output)."""
        for row, intervention in self._interventions.items():
            if row < len(outcome.output_lengths):
                outcome.output_lengths[row] = min(outcome.output_lengths[row], intervention.step + 1)
                outcome.finish_reasons[row] = sc.FINISH_REASON_COREVITAL_STOPPED

    def finalize(self, outcome: GenerationOutcome) -> rep.CaptureReport | None:
        """The complete capture report of the call; ``None`` when nothing was captured (the span is
        not recorded, or the capture failed). ``outcome`` must already carry the interventions
        (:meth:`apply_interventions`)."""
        if self.level is None or self.error is not None:
            return None
        sequences = outcome.sequences
        column = self.request.prompt_length + len(self._steps) - 1
        if (
            self._monitors
            and sequences is not None
            and sequences.shape[0] == len(self._monitors)
            and column < sequences.shape[1]
        ):
            self._observe_tokens(sequences[:, column])  # the last step's token, never fed back
        steps, self._steps = self._steps, []
        report = rep.CaptureReport(
            self.level.value,
            hidden_size=self._hidden_size,
            attention_heads=self._attention_heads,
            step_times_ns=self._step_times_ns,
            time_to_first_token=self.time_to_first_token,
            overhead_seconds=self.overhead,
            unavailable=dict(self._unavailable),
        )
        if not steps:
            return report
        packed = torch.stack(steps)  # [steps, rows, features]
        total_steps, rows, _ = packed.shape
        layout = self._layout
        projected = None
        if layout.hidden_layers and self._single_beam:  # beam rows change meaning between steps
            projected = (
                self._hidden_blocks.projections()
                if not self._live
                else (torch.stack(self._projected) if self._projected else None)
            )
            if projected is not None and projected.shape[:2] != (total_steps, rows):
                projected = None
        if layout.hidden_layers and not self._live:
            summaries = self._hidden_blocks.results()
            if summaries is not None and summaries.shape[:2] == (total_steps, rows):
                packed[:, :, layout.hidden] = summaries.to(packed.device)
            similarities = self._similarity.results()
            if similarities is not None and similarities[0].shape[0] == total_steps:
                packed[:, :, layout.cosine_previous] = similarities[0].to(packed.device)
                packed[:, :, layout.max_similarity] = similarities[1].to(packed.device)
        if layout.hidden_layers and not self._single_beam:  # beam rows change meaning between steps
            packed[:, :, layout.max_similarity] = float("nan")
        chosen = torch.full((total_steps, rows), float("nan"), device=packed.device)
        if self._chosen:
            known = torch.stack(self._chosen[:total_steps])
            chosen[: known.shape[0]] = known.to(chosen.device)
        last_column = self.request.prompt_length + total_steps - 1
        if (
            self._prev_probs is not None
            and len(self._chosen) == total_steps - 1
            and sequences is not None
            and sequences.shape[0] == rows
            and last_column < sequences.shape[1]
        ):
            chosen[-1] = chosen_probability(self._prev_probs, sequences[:, last_column]).to(chosen.device)
        self._prev_probs = None
        self._similarity.clear()
        self._hidden_blocks.clear()
        self._projected.clear()
        self._chosen.clear()
        # The one device -> host transfer of the series (and of the projected states).
        parts = [packed, chosen[..., None]]
        if projected is not None:
            parts.append(projected.to(packed.device))
        host = torch.cat(parts, dim=-1).cpu().numpy().astype(np.float64)
        chosen_column = packed.shape[-1]  # then the projected states, if any
        row_of = self._row_mapping(rows, len(outcome.output_lengths))
        report.sequences = [
            self._sequence_report(host, index, row_of[index], outcome, chosen_column)
            for index in range(len(outcome.output_lengths))
        ]
        if projected is not None:
            for sequence, row in zip(report.sequences, row_of, strict=True):
                sequence.state_projection = host[: sequence.steps, row, chosen_column + 1 :]
        return report

    def _replay(
        self, series: dict[str, np.ndarray], nonfinite: tuple[np.ndarray, np.ndarray], tokens: list[int]
    ) -> StepMonitor | None:
        """Run a fresh monitor over one sequence's finished steps, as it would have run live."""
        if self._make_monitor is None:
            return None
        monitor = self._make_monitor()
        times = self._step_times_ns
        monitor.clock = lambda step: times[step] if step < len(times) else 0
        return replay(
            monitor,
            series[rep.SERIES_ENTROPY],
            series[rep.SERIES_MARGIN],
            series[rep.SERIES_SURPRISAL],
            series.get(rep.SERIES_HIDDEN_MAX_SIMILARITY),
            *nonfinite,
            tokens,
        )

    def _row_mapping(self, rows: int, returned: int) -> list[int]:
        if rows == returned:
            return list(range(returned))
        beams, per_input = self.request.num_beams, self.request.num_return_sequences
        if beams > 1 and returned % per_input == 0 and rows == returned // per_input * beams:
            # Beam search: follow the j-th best running beam of each input.
            return [(j // per_input) * beams + j % per_input for j in range(returned)]
        raise CaptureError(f"{rows} captured rows do not match {returned} returned sequences")

    def _sequence_report(
        self, host: np.ndarray, index: int, row: int, outcome: GenerationOutcome, chosen_column: int
    ) -> rep.SequenceReport:
        layout = self._layout
        n = min(outcome.output_lengths[index], host.shape[0])
        data = host[:n, row]
        metrics = logit_metrics(data[:, layout.logits])
        series = {
            rep.SERIES_ENTROPY: metrics["entropy"],
            rep.SERIES_MARGIN: metrics["margin"],
            rep.SERIES_TOPK_MASS: metrics["topk_mass"],
            rep.SERIES_TOP1_PROB: metrics["top_probs"][:, 0],
            rep.SERIES_SURPRISAL: surprisal_bits(data[:, chosen_column]),
        }
        tokens = _generated_tokens(outcome.sequences, index, self.request.prompt_length, n)
        report = rep.SequenceReport(
            index=index,
            output_tokens=outcome.output_lengths[index],
            finish_reason=outcome.finish_reasons[index],
            series=series,
            top_probs=metrics["top_probs"],
            top_ids=metrics["top_ids"],
            tokens=tokens,
            prompt_tokens=self.request.prompt_tokens(index // max(1, self.request.num_return_sequences)),
        )
        nonfinite = (np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        if layout.hidden_layers:
            hidden = data[:, layout.hidden].reshape(n, layout.hidden_layers, len(HIDDEN_LAYER_FIELDS))
            report.hidden_layers = {name: hidden[:, :, i] for i, name in enumerate(HIDDEN_LAYER_FIELDS)}
            series[rep.SERIES_HIDDEN_L2_NORM] = hidden[:, -1, HIDDEN_LAYER_FIELDS.index("l2_norm")]
            series[rep.SERIES_HIDDEN_COSINE_PREVIOUS] = data[:, layout.cosine_previous]
            series[rep.SERIES_HIDDEN_MAX_SIMILARITY] = data[:, layout.max_similarity]
            nonfinite = (hidden[:, :, _NAN_COUNT].sum(axis=1) > 0, hidden[:, :, _INF_COUNT].sum(axis=1) > 0)
        if layout.attention_layers:
            attention = data[:, layout.attention].reshape(
                n, layout.attention_layers, len(ATTENTION_LAYER_FIELDS)
            )
            report.attention_layers = {
                name: attention[:, :, i] for i, name in enumerate(ATTENTION_LAYER_FIELDS)
            }
            normalized = attention[:, :, ATTENTION_LAYER_FIELDS.index("entropy_normalized_mean")]
            series[rep.SERIES_ATTENTION_ENTROPY_NORMALIZED] = nanmean(normalized, axis=1)  # all-NaN rows: NaN
            series[rep.SERIES_ATTENTION_COLLAPSED_HEADS] = attention[
                :, :, ATTENTION_LAYER_FIELDS.index("collapsed_heads")
            ].sum(axis=1)
        if self._live:
            monitor = self._monitors[row] if row < len(self._monitors) else None
        else:
            monitor = self._replay(series, nonfinite, tokens)
        if monitor is not None:
            report.firings = [f for f in monitor.firings if f.step < n]
            report.streamed = True
            report.intervention = self._interventions.get(row)
        return report


def _generated_tokens(sequences: torch.Tensor | None, row: int, prompt_length: int, steps: int) -> list[int]:
    """The generated token ids of ``row`` (empty when the result has no sequences)."""
    if sequences is None or row >= sequences.shape[0]:
        return []
    return [int(t) for t in sequences[row, prompt_length : prompt_length + steps].tolist()]


def drop_outputs(output: Any, keys: tuple[str, ...]) -> None:
    """Remove the tensors only the capture asked for, so nothing downstream keeps them alive."""
    for key in keys:
        if isinstance(output, collections.OrderedDict) and key in output:
            # ModelOutput forbids ``del``; these keys exist only because the capture asked for them.
            collections.OrderedDict.__delitem__(output, key)
        if getattr(output, key, None) is not None:
            object.__setattr__(output, key, None)
