"""The ``generate`` wrapper: span lifecycle, GenAI attributes, capture session, call through.

This is the one place that wires the rooms together: ``generation`` reads the call, ``capture``
summarises the steps, ``telemetry`` writes the result. Nothing here may break the user's call:
CoreVital's own failures are caught, logged once per kind and recorded on the span as
``corevital.error.type``; the model's exceptions are recorded and re-raised unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry._logs import Logger
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from . import semconv as sc
from .capture import CaptureSession, HookRegistry, active_session
from .capture.intervention import with_health_criterion
from .config import CaptureLevel, Settings
from .generation import GenerationOutcome, GenerationRequest, inspect_result, model_name, resolve_request
from .model_profiles import ModelProfile, profile_for
from .report import SERIES_ENTROPY, CaptureReport, Intervention
from .signals.assess import SequenceHealth, assess
from .signals.calibration import CalibrationProfile
from .signals.fingerprint import prompt_hash
from .signals.streaming import SequenceMonitor
from .telemetry import (
    Instruments,
    add_events,
    content_attributes,
    emit_evaluation,
    health_attributes,
    intervention_attributes,
    report_attributes,
    request_attributes,
    response_attributes,
    sequence_event_attributes,
    worst_index,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# True while a generate() call is being traced in this context: a pipeline, an overridden
# generate calling super().generate, or an assistant model's generate gives one span, not several.
_IN_GENERATE: contextvars.ContextVar[bool] = contextvars.ContextVar("corevital_in_generate", default=False)


class _OncePerKind:
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


class GenerateWrapper:
    """``wrapt`` wrapper of ``GenerationMixin.generate``."""

    def __init__(
        self,
        tracer: Tracer,
        instruments: Instruments,
        settings: Settings,
        hooks: HookRegistry,
        logger: Logger | None = None,
        calibration: CalibrationProfile | None = None,
        report_listener: Callable[[CaptureReport], None] | None = None,
    ) -> None:
        self._tracer = tracer
        self._instruments = instruments
        self._settings = settings
        self._hooks = hooks
        self._logger = logger
        self._calibration = calibration
        self._report_listener = report_listener  # internal: ``corevital calibrate`` reads reports
        self._log_once = _OncePerKind()

    def __call__(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if instance is None or _IN_GENERATE.get() or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        token = _IN_GENERATE.set(True)
        try:
            return self._traced_call(wrapped, instance, args, kwargs)
        finally:
            _IN_GENERATE.reset(token)

    # -------------------------------------------------------------------------------------------
    def _traced_call(
        self, wrapped: Callable[..., Any], model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        started = time.perf_counter()
        errors: list[str] = []

        def internal_error(where: str, exc: BaseException) -> None:
            self._log_once(where, exc)
            errors.append(type(exc).__qualname__)

        guard = functools.partial(self._guard, internal_error)
        request = guard("reading the generate() arguments", resolve_request, model, args, kwargs)
        if request is None:
            request = GenerationRequest(model_name=model_name(model))
        attributes = guard("building request attributes", request_attributes, request) or {}
        span = self._tracer.start_span(
            f"{sc.GEN_AI_OPERATION_TEXT_COMPLETION} {request.model_name}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        session = guard(
            "preparing the capture", self._open_session, model, request, span.is_recording(), internal_error
        )
        restore_attention = None
        if session is not None and session.level is CaptureLevel.ATTENTION:
            restore_attention = guard("switching to eager attention", _use_eager_attention, model)
        if session is not None and session.stop_on and session.level is not None:
            args, kwargs = guard(
                "adding the stop_on criterion", _inject_criterion, args, kwargs, session
            ) or (
                args,
                kwargs,
            )

        capture = active_session(session) if session is not None else contextlib.nullcontext()
        try:
            with (
                trace.use_span(
                    span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                ),
                capture,
            ):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if restore_attention is not None:
                guard("restoring the attention implementation", restore_attention)
            guard(
                "recording the model's exception", self._record_failure, span, request, exc, started, errors
            )
            span.end()
            raise
        if restore_attention is not None:
            guard("restoring the attention implementation", restore_attention)
        readout_started = time.perf_counter()
        guard("writing telemetry", self._record_success, span, request, session, result, started)
        if session is not None and session.level is not None:
            overhead = session.overhead + time.perf_counter() - readout_started
            guard(
                "recording the overhead",
                self._instruments.record_overhead,
                request,
                session.level.value,
                overhead,
                trace.set_span_in_context(span),
            )
        if errors:
            span.set_attribute(sc.COREVITAL_ERROR_TYPE, errors[0])
        span.end()
        return result

    def _open_session(
        self,
        model: Any,
        request: GenerationRequest,
        recording: bool,
        internal_error: Callable[[str, BaseException], None],
    ) -> CaptureSession:
        self._hooks.ensure(model)
        settings = self._settings
        # An unsampled span pays for no capture, unless the user asked CoreVital to stop sequences.
        level: CaptureLevel | None = settings.capture if recording or settings.stop_on else None
        if level is not None and request.unsupported_reason is not None:
            self._log_once("capturing this generation mode", NotImplementedError(request.unsupported_reason))
            level = None
        profile = profile_for(model, settings.profiles_dir)
        return CaptureSession(
            model,
            request,
            level,
            collapsed_threshold=profile.collapsed_head_entropy_threshold,
            focused_threshold=profile.focused_head_concentration_threshold,
            on_error=lambda exc: internal_error("summarising a decoding step", exc),
            make_observer=lambda: SequenceMonitor(
                high_entropy_threshold_bits=profile.high_entropy_threshold_bits,
                repetition_ngram=profile.repetition_ngram,
                repetition_similarity_threshold=profile.repetition_similarity_threshold,
                eos_token_ids=request.eos_token_ids,
            ),
            stop_on=settings.stop_on,
            profile=profile,
        )

    def _record_success(
        self,
        span: trace.Span,
        request: GenerationRequest,
        session: CaptureSession | None,
        result: Any,
        started: float,
    ) -> None:
        duration = time.perf_counter() - started
        outcome: GenerationOutcome = inspect_result(result, request)
        interventions: list[Intervention] = []
        if session is not None:
            session.apply_interventions(outcome)
            interventions = sorted(session.interventions.values(), key=lambda i: i.row)
        first_token = None
        if session is not None and session.timing.first_token is not None:
            first_token = session.timing.first_token - started
        context = trace.set_span_in_context(span)
        self._instruments.record_call(
            request,
            outcome,
            duration=duration,
            time_to_first_token=first_token,
            error_type=None,
            context=context,
        )
        if not span.is_recording():
            self._instruments.record_health(request, [], interventions, context)
            return
        # The GenAI attributes first: they must survive a failure of the health read-out below.
        span.set_attributes(response_attributes(request, outcome))
        if self._settings.capture_content:
            span.set_attributes(content_attributes(request, outcome))
        report = session.finalize(outcome) if session is not None else None
        if report is None or session is None:
            self._instruments.record_health(request, [], interventions, context)
            return
        if self._report_listener is not None:
            self._report_listener(report)
        health = self._assess(session, request, report, outcome)
        primary = worst_index(health) if health else 0
        max_points = self._settings.series_max_points
        span.set_attributes(report_attributes(report, max_points, primary))
        hashed = None
        if request.input_ids is not None:
            hashed = prompt_hash(
                request.prompt_tokens(primary // request.num_return_sequences), request.model_name
            )
        span.set_attributes(health_attributes(health, hashed))
        span.set_attributes(intervention_attributes(interventions))
        if len(report.sequences) > 1:
            for sequence in report.sequences:
                span.add_event(sc.EVENT_COREVITAL_SEQUENCE, sequence_event_attributes(sequence, max_points))
        add_events(span, health, interventions, session.timing.step_times_ns)
        for sequence in report.sequences:
            self._instruments.record_entropy(request, sequence.series.get(SERIES_ENTROPY, ()), context)
        self._instruments.record_health(request, health, interventions, context)
        if self._logger is not None:
            emit_evaluation(self._logger, health, request.model_name, context)

    def _assess(
        self,
        session: CaptureSession,
        request: GenerationRequest,
        report: CaptureReport,
        outcome: GenerationOutcome,
    ) -> list[SequenceHealth]:
        """The health read-out of every returned sequence."""
        profile: ModelProfile = session.profile
        tokenizer, sequences = request.tokenizer, outcome.sequences
        content = self._settings.capture_content and tokenizer is not None and sequences is not None
        health = []
        for sequence in report.sequences:
            observer = session.observers[sequence.index] if sequence.index < len(session.observers) else None
            firings = [f for f in getattr(observer, "firings", ()) if f.step < sequence.steps]
            token_text = None
            if content:
                token_text = functools.partial(
                    _token_text, tokenizer, sequences, sequence.index, request.prompt_length
                )
            health.append(
                assess(
                    sequence,
                    profile,
                    firings,
                    attention_heads=report.attention_heads,
                    calibration=self._calibration,
                    token_text=token_text,
                    streamed=observer is not None,
                    tokens=_generated_tokens(
                        sequences, sequence.index, request.prompt_length, sequence.steps
                    ),
                )
            )
        return health

    def _record_failure(
        self,
        span: trace.Span,
        request: GenerationRequest,
        exc: BaseException,
        started: float,
        errors: list[str],
    ) -> None:
        error_type = type(exc).__qualname__
        self._instruments.record_call(
            request,
            None,
            duration=time.perf_counter() - started,
            time_to_first_token=None,
            error_type=error_type,
            context=trace.set_span_in_context(span),
        )
        if span.is_recording():
            span.set_attribute(sc.ERROR_TYPE, error_type)
            if errors:
                span.set_attribute(sc.COREVITAL_ERROR_TYPE, errors[0])
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))

    @staticmethod
    def _guard(
        report: Callable[[str, BaseException], None], where: str, fn: Callable[..., T], *args: Any
    ) -> T | None:
        try:
            return fn(*args)
        except Exception as exc:
            report(where, exc)
            return None


def _generated_tokens(sequences: Any, row: int, prompt_length: int, steps: int) -> list[int]:
    """The generated token ids of ``row`` (empty when the result has no sequences)."""
    if sequences is None or row >= sequences.shape[0]:
        return []
    return [int(t) for t in sequences[row, prompt_length : prompt_length + steps].tolist()]


def _token_text(tokenizer: Any, sequences: Any, row: int, prompt_length: int, step: int) -> str:
    """The text of the token generated at ``step`` of ``row`` (content capture only)."""
    return str(tokenizer.decode(sequences[row, prompt_length + step : prompt_length + step + 1]))


def _inject_criterion(
    args: tuple[Any, ...], kwargs: dict[str, Any], session: CaptureSession
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Add CoreVital's stopping criterion to the user's own (positional or keyword), copying them."""
    if len(args) > 3:  # generate(inputs, generation_config, logits_processor, stopping_criteria, ...)
        return (*args[:3], with_health_criterion(args[3], session), *args[4:]), kwargs
    return args, {
        **kwargs,
        "stopping_criteria": with_health_criterion(kwargs.get("stopping_criteria"), session),
    }


def _use_eager_attention(model: Any) -> Callable[[], None] | None:
    """Switch ``model`` to eager attention (the only kernel that returns weights); return the undo."""
    config: Any = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager"):
        return None
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        setter("eager")
        return lambda: setter(current)
    config._attn_implementation = "eager"

    def restore() -> None:
        config._attn_implementation = current

    return restore
