"""The capture session of one ``generate()`` call: it records, and hands over what it recorded.

The forward hooks (:mod:`.hooks`) report every forward of the call's model to the session; the
session settles what can be captured, asks the forward for the tensors that needs, has
:class:`~.steps.StepRecorder` summarise the step on the device, and drops the tensors only it asked
for, so ``generate`` holds exactly the memory it would hold uninstrumented. With ``stop_on`` a
:class:`~.live.LiveWatch` decides stops through the injected stopping criterion (:meth:`stop_mask`)
or, under continuous batching, :meth:`batched_stop`. When the call returns, :meth:`finish` hands
over one :class:`Recording` (host arrays, one device -> host copy); what it means is the read-out's
job (``readout.read_out``), never the session's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import torch

from ..config import CaptureLevel
from ..generation import GenerationRequest
from .attention import NOT_THROUGH_INTERFACE, AttentionTap, reads_weights
from .layout import StepLayout
from .live import LiveWatch, Monitor
from .outputs import ATTENTION_KEYS, HIDDEN_KEYS, drop_outputs, forward_accepts
from .recording import Recording
from .steps import CaptureError, StepRecorder

__all__ = ["CaptureError", "CaptureSession", "Recording", "drop_outputs", "forward_accepts"]


class CaptureSession:
    """Records the decoding steps of one ``generate()`` call on one model.

    Args:
        model: the model whose forwards are recorded (forwards of other models are ignored).
        request: the resolved request (prompt length, beams, chunked prefill).
        level: what to record; ``None`` records timing only (unsampled spans pay for nothing else).
        collapsed_threshold, focused_threshold: attention head thresholds (model profile).
        on_error: called once with the first exception raised inside the capture; recording then
            stops for the rest of the call and the user's generation goes on untouched.
        make_monitor: builds the streaming monitor of one row, for the live watch of ``stop_on``.
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
        make_monitor: Callable[[], Monitor] | None = None,
        stop_on: Collection[str] = (),
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.started = time.perf_counter()
        self.error: BaseException | None = None
        self.overhead = 0.0  # seconds spent in CoreVital's hooks and criterion during the call
        self.stop_on = frozenset(stop_on)
        self._request = request
        self._unavailable = dict(unavailable or {})
        self._on_error = on_error
        self._skip = max(0, request.prefill_forwards - 1)
        level = self._settle(model, level)
        # Beam search reorders rows between steps: the next input row is not the continuation of
        # the same row, so chosen-token probabilities, state revisits and streaming are undefined.
        single_beam = request.num_beams <= 1
        self._live = (
            LiveWatch(make_monitor, self.stop_on)
            if self.stop_on and make_monitor is not None and single_beam and level is not None
            else None
        )
        # Attention through the interface, unless the model computes its weights anyway (4.5x eager).
        tap = (
            AttentionTap(model, collapsed_threshold, focused_threshold)
            if level is CaptureLevel.ATTENTION and not reads_weights(model)
            else None
        )
        self._recorder = (
            StepRecorder(
                level,
                encoder_decoder=request.is_encoder_decoder,
                single_beam=single_beam,
                every_step=self._live is not None,
                attention_tap=tap,
                collapsed_threshold=collapsed_threshold,
                focused_threshold=focused_threshold,
                on_unavailable=self._unavailable.__setitem__,
            )
            if level is not None
            else None
        )
        self._added: tuple[str, ...] = ()
        self._first_token: float | None = None
        self._step_times_ns: list[int] = []

    def _settle(self, model: Any, level: CaptureLevel | None) -> CaptureLevel | None:
        """The level this call can have on this model (the reasons for less go on the span)."""
        if level is not None and level.captures_hidden and not forward_accepts(model, "output_hidden_states"):
            self._unavailable[CaptureLevel.HIDDEN.value] = "the model's forward has no output_hidden_states"
            return CaptureLevel.LOGITS
        if level is CaptureLevel.ATTENTION and CaptureLevel.ATTENTION.value in self._unavailable:
            return CaptureLevel.HIDDEN
        if (
            level is CaptureLevel.ATTENTION
            and reads_weights(model)
            and not forward_accepts(model, "output_attentions")
        ):
            self._unavailable[CaptureLevel.ATTENTION.value] = NOT_THROUGH_INTERFACE
            return CaptureLevel.HIDDEN
        return level

    @property
    def level(self) -> CaptureLevel | None:
        """What this call records (it may be lowered when a level turns out to be unavailable)."""
        return self._recorder.level if self._recorder is not None else None

    @property
    def attention_tap(self) -> AttentionTap | None:
        """The reader of this call's attention, while it listens (:mod:`.attention`)."""
        return self._recorder.attention_tap if self._recorder is not None and self.error is None else None

    # -- hooks -----------------------------------------------------------------------------------
    def before_forward(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Ask the forward for the tensors the capture level needs and the caller did not."""
        recorder = self._recorder
        if recorder is None or self.error is not None:
            return None
        started = time.perf_counter()
        added: list[str] = []
        if recorder.level.captures_hidden and not kwargs.get("output_hidden_states"):
            kwargs["output_hidden_states"] = True
            added.extend(HIDDEN_KEYS)
        if recorder.weights_wanted and not kwargs.get("output_attentions"):
            kwargs["output_attentions"] = True
            added.extend(ATTENTION_KEYS)
        if recorder.attention_tap is not None and self._skip == 0:  # not an earlier prefill chunk
            recorder.attention_tap.begin()
        self._added = tuple(added)
        self.overhead += time.perf_counter() - started
        return (args, kwargs) if added else None

    def after_forward(self, kwargs: dict[str, Any], output: Any) -> None:
        """Record one forward's outputs, then drop what only the capture asked for."""
        started = time.perf_counter()
        recorder = self._recorder
        try:
            if self._skip > 0:  # an earlier chunk of a chunked prefill: not a decoding step
                self._skip -= 1
                return
            if self._first_token is None:
                self._first_token = started
            if recorder is None or self.error is not None:
                return
            self._step_times_ns.append(time.time_ns())
            recorded = recorder.record(kwargs, output)
            if recorder.tap_error is not None and self._on_error is not None:
                self._on_error(recorder.tap_error)  # attention only: the rest goes on
                recorder.tap_error = None
            if self._live is not None:
                self._live.observe_step(recorded.packed, recorder.layout, recorded.tokens, recorded.chosen)
        except Exception as exc:
            self._fail(exc)
        finally:
            if recorder is not None and recorder.attention_tap is not None:
                recorder.attention_tap.listening = False
            if self._added:
                drop_outputs(output, self._added)
                self._added = ()
            self.overhead += time.perf_counter() - started

    # -- stop_on ----------------------------------------------------------------------------------
    def stop_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """For the injected stopping criterion: the rows to stop now (one bool per row)."""
        stop = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.error is not None or self._live is None or self._recorder is None:
            return stop
        started = time.perf_counter()
        try:
            chosen = self._recorder.observe_tokens(input_ids[:, -1])
            if chosen is not None:
                self._live.observe_tokens(input_ids[:, -1], chosen)
            for row in self._live.stops(self._recorder.steps - 1):
                if row < stop.shape[0]:
                    stop[row] = True
        except Exception as exc:
            self._fail(exc)
        self.overhead += time.perf_counter() - started
        return stop

    # -- continuous batching ------------------------------------------------------------------------
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
        sequences' in a packed forward (``batching.BatchStep``).

        Args:
            at: ``time.perf_counter()`` when the step's token was produced.
            packed: this sequence's ``[1, layout.width]`` row of the step (``None``: timing only).
            layout: the columns of ``packed``.
            chosen: ``[1]`` probability of the token sampled at this step.
            state: ``[1, hidden]`` last-layer state (for the state similarities), with hidden states.
            token: the token sampled at this step (fed to the live watch with ``stop_on``).
        """
        if self._first_token is None:
            self._first_token = at
        if self._recorder is None or self.error is not None or packed is None or layout is None:
            return
        started = time.perf_counter()
        try:
            self._step_times_ns.append(time.time_ns())
            self._recorder.record_batched(packed, layout, chosen, state)
            if self._live is not None:
                self._live.observe_step(packed, layout)
                if token is not None:
                    self._live.observe_tokens(torch.tensor([token]), chosen)
        except Exception as exc:
            self._fail(exc)
        self.overhead += time.perf_counter() - started

    def batched_stop(self) -> bool:
        """After :meth:`add_batched_step`: whether a ``stop_on`` signal fired in this call's single
        sequence at this step (the intervention is recorded, as :meth:`stop_mask` does)."""
        if self.error is not None or self._live is None or self._recorder is None:
            return False
        return bool(self._live.stops(self._recorder.steps - 1))

    # -- the end of the call --------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            if self._recorder is not None:
                self._recorder.clear()
            if self._on_error is not None:
                self._on_error(exc)

    @property
    def time_to_first_token(self) -> float | None:
        """Seconds from the start of the call to the end of the prefill forward."""
        return None if self._first_token is None else self._first_token - self.started

    def finish(self, sequences: torch.Tensor | None = None) -> Recording:
        """Stop recording and hand over what was recorded (``sequences``: what ``generate``
        returned, for the last step's chosen tokens)."""
        recorder = self._recorder
        steps = None
        if recorder is not None and self.error is None:
            try:
                steps = recorder.finish(sequences, self._request.prompt_length)
            except Exception as exc:
                self._fail(exc)
        return Recording(
            level=recorder.level.value if recorder is not None else None,
            steps=steps if self.error is None else None,
            step_times_ns=tuple(self._step_times_ns),
            time_to_first_token=self.time_to_first_token,
            overhead_seconds=self.overhead,
            unavailable=dict(self._unavailable),
            interventions=dict(self._live.interventions) if self._live is not None else {},
            hidden_size=recorder.hidden_size if recorder is not None else 0,
            attention_heads=recorder.attention_heads if recorder is not None else 0,
            error=self.error,
        )
