"""One call's life, from its start to its telemetry: open → run → close.

The ``generate()`` wrapper (:mod:`._wrap`) and continuous batching (:mod:`.batching`) both live
through it. :meth:`CallLifecycle.open_call` reads the request, starts the span (child of the current
context), chooses the model profile and opens the capture session; the caller runs the model with
the session current (``capture.active_session``); :meth:`CallLifecycle.close_call` takes what the
session recorded, has :func:`~.readout.read_out` say what it means, hands the call to the one
telemetry writer and delivers the health report to whoever asked for it in code.

One guard, one shape: everything CoreVital does for a call runs in :meth:`Call.guard`, which catches
the failure, logs it once per kind for the process, records its type on the call (the span's
``corevital.error.type``, the ``corevital.internal_errors`` metric) and goes on without that step's
result. The model's own exceptions are never caught here.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace

from .capture import CaptureSession, HookRegistry, Recording
from .config import CaptureLevel, Settings
from .generation import GenerationOutcome, GenerationRequest, model_name
from .messages import Messages, call_messages
from .profiles import ModelProfile, profile_for
from .readout import capture_report, health_report, input_row, make_monitor
from .reports import HealthReports, ReportDelivery
from .signals.calibration import CalibrationProfile
from .signals.fingerprint import prompt_hash
from .telemetry import CallRecord, Writer

__all__ = ["Call", "CallLifecycle"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Without a configured key, prompt hashes are keyed per process (docs/privacy.md).
_PROCESS_KEY = secrets.token_bytes(32)


class OncePerKind:
    """Log each kind of internal failure once per process, however often it happens."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, where: str, exc: BaseException) -> None:
        key = (where, type(exc).__qualname__)
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        logger.warning(
            "CoreVital: internal error while %s (%s: %s); generation is unaffected, telemetry may be "
            "incomplete. Further errors of this kind are not logged.",
            where, type(exc).__qualname__, exc, exc_info=logger.isEnabledFor(logging.DEBUG),
        )  # fmt: skip


@dataclass
class Call:
    """One traced call in progress: what :meth:`CallLifecycle.close_call` needs at its end.

    ``internal_error`` logs a CoreVital failure once per kind and keeps its type for the span;
    ``guard`` runs a step of CoreVital's own and turns its failure into ``None``.
    """

    started: float
    log_once: Callable[[str, BaseException], None]
    request: GenerationRequest = field(default_factory=lambda: GenerationRequest(model_name="unknown"))
    span: trace.Span = trace.INVALID_SPAN
    session: CaptureSession | None = None
    profile: ModelProfile | None = None
    wants_report: bool = False
    hook_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    collectors: tuple[HealthReports, ...] = ()  # the health_reports() blocks the call started in

    def internal_error(self, where: str, exc: BaseException) -> None:
        self.log_once(where, exc)
        self.errors.append(type(exc).__qualname__)

    def guard(self, where: str, fn: Callable[..., T], *fn_args: Any, **fn_kwargs: Any) -> T | None:
        try:
            return fn(*fn_args, **fn_kwargs)
        except Exception as exc:
            self.internal_error(where, exc)
            return None


class CallLifecycle:
    """Opens and closes the calls of one instrumentation (see the module docstring).

    Args:
        writer: the one writer of telemetry.
        settings: the resolved settings of ``instrument()``.
        hooks: the forward hooks of this instrumentation.
        delivery: hands health reports to ``health_reports()`` blocks and ``on_report``.
        calibration: a healthy-run profile (divergence scores), if configured.
    """

    def __init__(
        self,
        writer: Writer,
        settings: Settings,
        hooks: HookRegistry,
        delivery: ReportDelivery,
        calibration: CalibrationProfile | None = None,
    ) -> None:
        self.settings = settings
        self.hooks = hooks
        self.log_once = OncePerKind()
        self._writer = writer
        self._delivery = delivery
        self._calibration = calibration
        self._key = settings.prompt_hash_key.get_secret_value() if settings.prompt_hash_key else _PROCESS_KEY

    def open_call(
        self,
        model: Any,
        started: float,
        read_request: Callable[[Callable[..., Any]], GenerationRequest | None],
        *,
        level_unavailable: Mapping[str, str] | None = None,
    ) -> Call:
        """Start one call: its request (``read_request(guard)``), its span, its model profile and
        its capture session. Never raises.

        ``level_unavailable``: capture levels this kind of call cannot have, with the reason.
        """
        call = Call(started=started, log_once=self.log_once)
        guard = call.guard
        request = read_request(guard)
        if request is None:
            request = GenerationRequest(model_name=guard("naming the model", model_name, model) or "unknown")
        call.request = request
        call.span = self._writer.start_span(request, guard)
        call.wants_report = guard("checking for report collectors", self._delivery.wanted) or False
        call.collectors = self._delivery.collectors()
        call.profile = guard("choosing the model profile", profile_for, model, self.settings.profiles_dir)
        if call.profile is not None:
            wanted = call.span.is_recording() or call.wants_report
            call.session = guard(
                "preparing the capture", self._open_session, model, call, wanted, level_unavailable,
                self.settings.stop_on,
            )  # fmt: skip
        return call

    def _open_session(
        self,
        model: Any,
        call: Call,
        wanted: bool,
        unavailable: Mapping[str, str] | None,
        stop_on: Collection[str],
    ) -> CaptureSession:
        self.hooks.ensure(model)
        request, profile = call.request, call.profile
        assert profile is not None
        # An unsampled span pays for no capture, unless the user asked CoreVital to stop sequences
        # or to hand over the health report in code.
        level: CaptureLevel | None = self.settings.capture if wanted or stop_on else None
        if request.unsupported_reason is not None:  # said once at INFO (generation.py), and on the span
            level = None
        return CaptureSession(
            model,
            request,
            level,
            collapsed_threshold=profile.collapsed_head_entropy_threshold,
            focused_threshold=profile.focused_head_concentration_threshold,
            on_error=lambda exc: call.internal_error("summarising a decoding step", exc),
            make_monitor=lambda: make_monitor(profile, request.eos_token_ids),
            stop_on=stop_on,
            unavailable=unavailable,
        )

    def close_call(
        self,
        call: Call,
        ended: float,
        *,
        outcome: GenerationOutcome | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Read out what the call recorded, write its telemetry, end its span and deliver its health
        report. Never raises."""
        guard, session = call.guard, call.session
        fields: dict[str, Any] = {}
        hook_seconds = call.hook_seconds
        if exception is None and session is not None:
            sequences = outcome.sequences if outcome is not None else None
            recording = guard("finishing the capture", session.finish, sequences)
            if recording is not None:
                hook_seconds += recording.overhead_seconds
                fields = {
                    "time_to_first_token": recording.time_to_first_token,
                    "capture_level": recording.level,
                }
                if outcome is not None:
                    outcome = outcome.stopped(recording.interventions)
                    guard("reading out", self._read_out, call, recording, outcome, fields)
        record = CallRecord(
            call.request,
            call.started,
            ended,
            outcome=outcome if exception is None else None,
            exception=exception,
            hook_seconds=hook_seconds,
            internal_errors=call.errors,
            **fields,
        )
        self._writer.finish(call.span, record, guard)
        if record.health is not None:
            guard("delivering the health report", self._delivery.deliver, record.health, call.internal_error,
                  call.collectors)  # fmt: skip

    def _read_out(
        self, call: Call, recording: Recording, outcome: GenerationOutcome, fields: dict[str, Any]
    ) -> None:
        """Add the read-out to the call's record ``fields``: the capture report, then the health
        report, each guarded on its own (a failed assessment keeps the series), then the prompt
        hash and the messages."""
        request, span, guard = call.request, call.span, call.guard
        content = self.settings.capture_content.enabled and span.is_recording()
        capture = guard("reading out the capture", capture_report, recording, request, outcome, call.profile)
        fields["capture"] = capture
        health = None
        if capture is not None and call.profile is not None and (span.is_recording() or call.wants_report):
            context = span.get_span_context()
            health = guard(
                "assessing the generation",
                health_report,
                capture,
                call.profile,
                calibration=self._calibration,
                expected_failure_rate=self.settings.expected_failure_rate,
                token_text=_token_text(request, outcome) if content else None,
                model=request.model_name,
                trace_id=trace.format_trace_id(context.trace_id) if context.is_valid else "",
                span_id=trace.format_span_id(context.span_id) if context.is_valid else "",
            )
            fields["health"] = health
        row = input_row(health.primary.index, request.num_return_sequences) if health is not None else 0
        if health is not None:
            prompt = request.prompt_tokens(row)
            if prompt:
                fields["prompt_hash"] = guard(
                    "hashing the prompt", prompt_hash, prompt, request.model_name, self._key
                )
        if content:
            fields["messages"] = guard("reading the messages", _messages, request, outcome, row)


def _token_text(request: GenerationRequest, outcome: GenerationOutcome) -> Callable[[int, int], str] | None:
    """Names the token a sequence generated at a step (content capture only)."""
    tokenizer, sequences, offset = request.tokenizer, outcome.sequences, request.prompt_length
    if tokenizer is None or sequences is None:
        return None
    return lambda index, step: str(tokenizer.decode(sequences[index, offset + step : offset + step + 1]))


def _messages(request: GenerationRequest, outcome: GenerationOutcome, row: int) -> Messages:
    """The messages of input ``row`` and its returned sequences."""
    choices = request.num_return_sequences
    indices = [i for i in range(len(outcome.output_lengths)) if input_row(i, choices) == row]
    completions: list[list[int]] = []
    if outcome.sequences is not None:
        start = request.prompt_length
        completions = [
            [int(t) for t in outcome.sequences[i, start : start + outcome.output_lengths[i]].tolist()]
            for i in indices
        ]
    return call_messages(
        tokenizer=request.tokenizer,
        prompt_ids=request.prompt_tokens(row) or None,
        pipeline_prompt=request.pipeline_prompts[row] if row < len(request.pipeline_prompts) else None,
        completions=completions,
        finish_reasons=[outcome.finish_reasons[i] for i in indices],
    )
