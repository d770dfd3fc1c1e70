"""The ``generate`` wrapper: wiring only.

One call, in order: read the call (``generation``), open the span (``telemetry.Writer``) and the
capture session (``capture``), call through with the right attention kernel held, then turn the
capture report into a health report (``signals``) and hand both to the writer and to whoever asked
for reports in code (``reports``). Nothing here may break the user's call: CoreVital's own failures
are caught, logged once per kind and recorded on the span as ``corevital.error.type``; the model's
exceptions are recorded and re-raised unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from .capture import CaptureSession, HookRegistry, KernelGates, active_session
from .capture.intervention import inject_criterion
from .config import CaptureLevel, Settings
from .generation import GenerationOutcome, GenerationRequest, inspect_result, model_name, resolve_request
from .messages import Messages, call_messages, current_pipeline_call
from .profiles import ModelProfile, profile_for
from .report import CaptureReport
from .reports import HealthReports, ReportDelivery
from .signals.assess import HealthReport, assess_report
from .signals.calibration import CalibrationProfile
from .signals.fingerprint import prompt_hash
from .signals.streaming import SequenceMonitor
from .telemetry import CallRecord, Writer

logger = logging.getLogger(__name__)

T = TypeVar("T")

# True while a generate() call is being traced in this context: a pipeline, an overridden
# generate calling super().generate, or an assistant model's generate gives one span, not several.
_IN_GENERATE: contextvars.ContextVar[bool] = contextvars.ContextVar("corevital_in_generate", default=False)

# Without a configured key, prompt hashes are keyed per process (docs/privacy.md).
_PROCESS_KEY = secrets.token_bytes(32)


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


@dataclass
class Call:
    """One traced call in progress: what :meth:`GenerateWrapper.close_call` needs at its end.

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

    def guard(self, where: str, fn: Callable[..., T], *fn_args: Any) -> T | None:
        try:
            return fn(*fn_args)
        except Exception as exc:
            self.internal_error(where, exc)
            return None


class GenerateWrapper:
    """``wrapt`` wrapper of ``GenerationMixin.generate``."""

    def __init__(
        self,
        writer: Writer,
        settings: Settings,
        hooks: HookRegistry,
        gates: KernelGates,
        delivery: ReportDelivery,
        calibration: CalibrationProfile | None = None,
    ) -> None:
        self._writer = writer
        self._settings = settings
        self._hooks = hooks
        self._gates = gates
        self._delivery = delivery
        self._calibration = calibration
        self._key = settings.prompt_hash_key.get_secret_value() if settings.prompt_hash_key else _PROCESS_KEY
        self.log_once = _OncePerKind()

    def __call__(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if instance is None or _IN_GENERATE.get():
            return wrapped(*args, **kwargs)
        if not is_instrumentation_enabled():
            # Not traced, but still run with the model's own attention kernel (another thread may
            # be capturing attention on the same model).
            with self._safely(lambda: self._gates.own_kernel(instance), self.log_once):
                try:
                    return wrapped(*args, **kwargs)
                finally:
                    self._release_forward(instance)
        token = _IN_GENERATE.set(True)
        try:
            return self._traced_call(wrapped, instance, args, kwargs)
        finally:
            _IN_GENERATE.reset(token)

    def _traced_call(
        self, wrapped: Callable[..., Any], model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        started = time.perf_counter()
        call = self.open_call(model, started, lambda guard: guard(
            "reading the generate() arguments", resolve_request, model, args, kwargs, current_pipeline_call()
        ))  # fmt: skip
        span, session, guard = call.span, call.session, call.guard
        if session is not None and session.stop_on and session.level is not None:
            args, kwargs = guard("adding the stop_on criterion", inject_criterion, args, kwargs, session) or (
                args,
                kwargs,
            )
        attention = session is not None and session.level is CaptureLevel.ATTENTION
        kernel = (lambda: self._gates.eager(model)) if attention else (lambda: self._gates.own_kernel(model))
        call.hook_seconds = time.perf_counter() - started
        capture = active_session(session) if session is not None else contextlib.nullcontext()
        with self._safely(kernel, call.internal_error) as unavailable:
            if unavailable and session is not None:
                guard("lowering the capture level", session.without_attention, unavailable)
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                try:
                    with capture:
                        try:
                            result = wrapped(*args, **kwargs)
                        finally:
                            self._release_forward(model)
                except BaseException as exc:
                    self.close_call(call, time.perf_counter(), exception=exc)
                    raise
        ended = time.perf_counter()
        self.close_call(
            call, ended, outcome=guard("reading the result", inspect_result, result, call.request)
        )
        return result

    # -- one call, from its start to its telemetry (generate() here; also continuous batching) ----
    def open_call(
        self,
        model: Any,
        started: float,
        read_request: Callable[[Callable[..., Any]], GenerationRequest | None],
        *,
        level_unavailable: dict[str, str] | None = None,
    ) -> Call:
        """Start one call: its request (``read_request(guard)``), its span (child of the current
        context), its model profile and its capture session. Never raises.

        ``level_unavailable``: capture levels this kind of call cannot have, with the reason.
        """
        call = Call(started=started, log_once=self.log_once)
        guard = call.guard
        request = read_request(guard)
        if request is None:
            request = GenerationRequest(model_name=guard("naming the model", model_name, model) or "unknown")
        call.request = request
        call.span = self._writer.start_span(request, call.internal_error)
        call.wants_report = guard("checking for report collectors", self._delivery.wanted) or False
        call.collectors = self._delivery.collectors()
        call.profile = guard("choosing the model profile", profile_for, model, self._settings.profiles_dir)
        if call.profile is not None:
            call.session = guard(
                "preparing the capture", self._open_session, model, request, call.profile,
                call.span.is_recording() or call.wants_report, call.internal_error, level_unavailable,
                self._settings.stop_on,
            )  # fmt: skip
        return call

    def close_call(
        self,
        call: Call,
        ended: float,
        *,
        outcome: GenerationOutcome | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Read out the capture, write the call's telemetry, end its span and deliver its health
        report. Never raises."""
        record = CallRecord(
            call.request, call.started, ended, exception=exception, internal_errors=call.errors
        )
        if exception is None:
            record.outcome = outcome
            if outcome is not None:
                call.guard(
                    "reading out the capture", self._read_out, record, call.profile, call.session, call.span,
                    call.wants_report,
                )  # fmt: skip
            record.hook_seconds = call.hook_seconds + (
                call.session.overhead if call.session is not None else 0.0
            )
        self._writer.finish(call.span, record, call.internal_error)
        if record.health is not None:
            call.guard(
                "delivering the health report", self._delivery.deliver, record.health, call.internal_error,
                call.collectors,
            )  # fmt: skip

    def _release_forward(self, model: Any) -> None:
        """Let go of the model's forward gate if an interrupted forward left it held."""
        try:
            self._hooks.release(model)
        except Exception as exc:  # pragma: no cover - defensive: never on the user's path
            self.log_once("releasing the forward gate", exc)

    def _open_session(
        self,
        model: Any,
        request: GenerationRequest,
        profile: ModelProfile,
        wanted: bool,
        internal_error: Callable[[str, BaseException], None],
        unavailable: dict[str, str] | None = None,
        stop_on: Collection[str] = (),
    ) -> CaptureSession:
        self._hooks.ensure(model)
        settings = self._settings
        # An unsampled span pays for no capture, unless the user asked CoreVital to stop sequences
        # or to hand over the health report in code.
        level: CaptureLevel | None = settings.capture if wanted or stop_on else None
        if request.unsupported_reason is not None:  # said once at INFO (generation.py), and on the span
            level = None
        return CaptureSession(
            model,
            request,
            level,
            collapsed_threshold=profile.collapsed_head_entropy_threshold,
            focused_threshold=profile.focused_head_concentration_threshold,
            on_error=lambda exc: internal_error("summarising a decoding step", exc),
            make_monitor=lambda: SequenceMonitor(
                high_entropy_threshold_bits=profile.high_entropy_threshold_bits,
                repetition_ngram=profile.repetition_ngram,
                repetition_similarity_threshold=profile.repetition_similarity_threshold,
                eos_token_ids=request.eos_token_ids,
                early_warning=profile.early_warning,
            ),
            stop_on=stop_on,
            unavailable=unavailable,
        )

    def _read_out(
        self,
        record: CallRecord,
        profile: ModelProfile | None,
        session: CaptureSession | None,
        span: trace.Span,
        wants_report: bool,
    ) -> None:
        """Fill ``record`` with what the capture saw and what it means."""
        request, outcome = record.request, record.outcome
        assert outcome is not None
        content = self._settings.capture_content.enabled and span.is_recording()
        if session is not None:
            record.time_to_first_token = session.time_to_first_token
            record.capture_level = session.level.value if session.level is not None else None
            session.apply_interventions(outcome)
            record.capture = session.finalize(outcome)
        if record.capture is not None and profile is not None and (span.is_recording() or wants_report):
            record.health = self._assess(record.capture, profile, request, outcome, span, content)
        row = 0
        if record.health is not None:
            row = record.health.primary.index // max(1, request.num_return_sequences)
            prompt = request.prompt_tokens(row)
            if prompt:
                record.prompt_hash = prompt_hash(prompt, request.model_name, self._key)
        if content:
            record.messages = self._messages(request, outcome, row)

    def _assess(
        self,
        capture: CaptureReport,
        profile: ModelProfile,
        request: GenerationRequest,
        outcome: GenerationOutcome,
        span: trace.Span,
        content: bool,
    ) -> HealthReport | None:
        tokenizer = request.tokenizer if content else None
        token_text = None
        if tokenizer is not None and outcome.sequences is not None:
            sequences, offset = outcome.sequences, request.prompt_length

            def token_text(index: int, step: int) -> str:
                return str(tokenizer.decode(sequences[index, offset + step : offset + step + 1]))

        health = assess_report(
            capture,
            profile,
            calibration=self._calibration,
            token_text=token_text,
            expected_failure_rate=self._settings.expected_failure_rate,
        )
        if health is None:
            return None
        health.model = request.model_name
        context = span.get_span_context()
        if context.is_valid:
            health.trace_id = trace.format_trace_id(context.trace_id)
            health.span_id = trace.format_span_id(context.span_id)
        return health

    @staticmethod
    def _messages(request: GenerationRequest, outcome: GenerationOutcome, row: int) -> Messages:
        """The messages of input ``row`` and its returned sequences."""
        choices = max(1, request.num_return_sequences)
        indices = [i for i in range(len(outcome.output_lengths)) if i // choices == row]
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

    @staticmethod
    @contextlib.contextmanager
    def _safely(
        make: Callable[[], contextlib.AbstractContextManager[Any]],
        on_error: Callable[[str, BaseException], None],
    ) -> Iterator[Any]:
        """Enter ``make()``; if CoreVital's own context manager fails, go on without it."""
        stack = contextlib.ExitStack()
        try:
            value = stack.enter_context(make())
        except Exception as exc:
            on_error("coordinating the attention kernel", exc)
            value = None
        with stack:
            yield value
