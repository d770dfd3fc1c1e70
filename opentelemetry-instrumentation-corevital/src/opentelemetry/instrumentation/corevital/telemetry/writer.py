"""The one writer of CoreVital's telemetry: span attributes, span events, metrics and log events.

The wrapper hands over one :class:`CallRecord` per finished ``generate()`` call; :meth:`Writer.finish`
writes it to every sink, each guarded on its own so that one failing sink (a raising exporter, an
exemplar filter, a span processor) costs only itself: span attributes first and always, then events,
then metrics, then log events, then the error type and the end of the span, and last the count of
CoreVital's own failures during the call (``corevital.internal_errors``). Nothing here raises into
the user's call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import Logger, LogRecord
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from .. import report as rep
from .. import semconv as sc
from ..generation import GenerationOutcome, GenerationRequest
from ..messages import Messages
from ..signals.assess import HealthReport
from .attributes import (
    content_attributes,
    report_attributes,
    request_attributes,
    response_attributes,
    sequence_event_attributes,
)
from .health import (
    SpanEvent,
    evaluation_attributes,
    health_attributes,
    health_events,
    intervention_attributes,
)
from .instruments import Instruments

#: Events CoreVital adds to one span at most: the SDK keeps 128 by default, and the rest is left to
#: other instrumentations and exceptions. What does not fit is counted in ``corevital.events.omitted``.
MAX_EVENTS = 96

#: ``guard(where, fn, *args)``: runs one step of CoreVital's own, turning its failure into ``None``
#: (logged once per kind, its type kept for the span): ``lifecycle.Call.guard``.
Guard = Callable[..., Any]


@dataclass
class CallRecord:
    """Everything about one finished call that telemetry writes.

    Attributes:
        request: the resolved request.
        started, ended: ``time.perf_counter()`` at the call's start and when ``generate`` returned.
        outcome: token counts and finish reasons (``None`` when the model raised).
        exception: the model's exception, when it raised.
        capture: the capture report (``None`` when nothing was captured).
        health: the health report (``None`` when not assessed).
        messages: prompt and completion messages (content capture only).
        prompt_hash: the keyed prompt hash.
        time_to_first_token: seconds to the end of the prefill forward.
        capture_level: the level the call ran at (``None``: no capture).
        hook_seconds: CoreVital's own time before and during the call (the read-out is added when
            the overhead is recorded).
        internal_errors: the type of every CoreVital failure so far (the first is recorded).
    """

    request: GenerationRequest
    started: float
    ended: float
    outcome: GenerationOutcome | None = None
    exception: BaseException | None = None
    capture: rep.CaptureReport | None = None
    health: HealthReport | None = None
    messages: Messages | None = None
    prompt_hash: str | None = None
    time_to_first_token: float | None = None
    capture_level: str | None = None
    hook_seconds: float = 0.0
    internal_errors: list[str] = field(default_factory=list)


class Writer:
    """Writes CoreVital's telemetry through the OpenTelemetry API.

    Args:
        tracer, instruments, event_logger: where spans, metrics and log events go.
        max_points: longest per-step series on a span (``series_max_points``).
        content_on_span: put prompt and completion messages on the span.
        content_in_event: emit them in a ``gen_ai.client.inference.operation.details`` log event.
    """

    def __init__(
        self,
        tracer: Tracer,
        instruments: Instruments,
        event_logger: Logger | None,
        *,
        max_points: int,
        content_on_span: bool = False,
        content_in_event: bool = False,
    ) -> None:
        self._tracer = tracer
        self._instruments = instruments
        self._logger = event_logger
        self._max_points = max_points
        self._content_on_span = content_on_span
        self._content_in_event = content_in_event

    # -- the span's start ------------------------------------------------------------------------
    def start_span(self, request: GenerationRequest, guard: Guard) -> trace.Span:
        """The span of one call; a non-recording span when starting it failed (a span processor's
        ``on_start`` raised), so that the call goes on."""
        attributes = guard("building request attributes", request_attributes, request) or {}
        span = guard(
            "starting the span",
            self._tracer.start_span,
            f"{sc.GEN_AI_OPERATION_TEXT_COMPLETION} {request.model_name}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        return span if span is not None else trace.INVALID_SPAN

    # -- the span's end --------------------------------------------------------------------------
    def finish(self, span: trace.Span, record: CallRecord, guard: Guard) -> None:
        """Write everything about the call, sink by sink, and end the span."""
        context = trace.set_span_in_context(span)
        recording = span.is_recording()
        if recording:
            self._span_attributes(span, record, guard)
            guard("adding span events", self._span_events, span, record)
        guard("recording metrics", self._metrics, record, context)
        if recording:
            guard("emitting log events", self._log_events, record, context)
        if record.internal_errors and recording:
            guard("recording the error type", span.set_attribute, sc.COREVITAL_ERROR_TYPE,
                     record.internal_errors[0])  # fmt: skip
        guard("ending the span", span.end)
        # Last, so that the failures of the sinks above are counted too (all but this one's own).
        errors = tuple(record.internal_errors)
        if errors:
            guard("counting internal errors", self._instruments.record_internal_errors,
                     record.request, errors, context)  # fmt: skip

    def _span_attributes(self, span: trace.Span, record: CallRecord, guard: Guard) -> None:
        request, health = record.request, record.health
        if record.exception is not None:
            exc = record.exception
            guard("recording the model's exception", _record_exception, span, exc)
            return
        if record.outcome is not None:
            # The GenAI attributes first: they must survive a failure of the health read-out below.
            guard("writing GenAI attributes", _set, span, response_attributes, request, record.outcome)
        if record.messages is not None and self._content_on_span:
            guard("writing content attributes", _set, span, content_attributes, record.messages)
        capture = record.capture
        if capture is not None:
            primary = health.primary.index if health is not None else 0
            guard("writing capture attributes", _set, span, report_attributes, capture,
                self._max_points, primary,
            )  # fmt: skip
            if capture.unavailable:
                reasons = "; ".join(f"{level}: {why}" for level, why in sorted(capture.unavailable.items()))
                guard("writing capture attributes", span.set_attribute,
                         sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON, reasons)  # fmt: skip
            guard("writing intervention attributes", _set, span, intervention_attributes,
                     capture.interventions)  # fmt: skip
        elif request.unsupported_reason:  # a decoding mode without one token per step: no level at all
            guard("writing capture attributes", span.set_attribute,
                     sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON,
                     f"{sc.CAPTURE_LEVEL_LOGITS}: {request.unsupported_reason}")  # fmt: skip
        if health is not None:
            guard(
                "writing health attributes",
                _set,
                span,
                health_attributes,
                health,
                record.prompt_hash,
            )

    def _span_events(self, span: trace.Span, record: CallRecord) -> None:
        if record.health is None or record.capture is None:
            return
        events = health_events(record.health, record.capture.step_times_ns)
        sequences = record.capture.sequences
        if len(sequences) > 1:
            # Each returned sequence's own read-out, the riskiest first when the budget is short.
            order = sorted(range(len(sequences)), key=lambda i: -record.health.sequences[i].risk.score)  # type: ignore[union-attr]
            rank = {index: position for position, index in enumerate(order)}
            events += [
                SpanEvent(
                    sc.EVENT_COREVITAL_SEQUENCE,
                    sequence_event_attributes(sequence, self._max_points),
                    None,
                    3 + rank[position],
                )
                for position, sequence in enumerate(sequences)
            ]
        kept = sorted(range(len(events)), key=lambda i: (events[i].priority, i))[:MAX_EVENTS]
        for index in sorted(kept):
            event = events[index]
            span.add_event(event.name, event.attributes, timestamp=event.timestamp)
        if len(events) > len(kept):
            span.set_attribute(sc.COREVITAL_EVENTS_OMITTED, len(events) - len(kept))

    def _metrics(self, record: CallRecord, context: Any) -> None:
        instruments, request = self._instruments, record.request
        error_type = type(record.exception).__qualname__ if record.exception is not None else None
        instruments.record_call(
            request,
            record.outcome,
            duration=record.ended - record.started,
            time_to_first_token=record.time_to_first_token,
            error_type=error_type,
            context=context,
        )
        if record.health is not None:
            instruments.record_health(request, record.health, context)
            for sequence in record.capture.sequences if record.capture is not None else ():
                instruments.record_entropy(request, sequence.series.get(rep.SERIES_ENTROPY, ()), context)
        elif record.capture is not None:
            instruments.record_interventions(request, record.capture.interventions, context)
        if record.capture_level is not None:
            overhead = record.hook_seconds + (time.perf_counter() - record.ended)
            instruments.record_overhead(request, record.capture_level, overhead, context)

    def _log_events(self, record: CallRecord, context: Any) -> None:
        if self._logger is None:
            return
        if record.health is not None:
            self._logger.emit(
                LogRecord(
                    event_name=sc.EVENT_GEN_AI_EVALUATION_RESULT,
                    context=context,
                    attributes=evaluation_attributes(record.health),
                )
            )
        if self._content_in_event and record.messages is not None:
            attributes = {
                sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_TEXT_COMPLETION,
                sc.GEN_AI_REQUEST_MODEL: record.request.model_name,
                **content_attributes(record.messages),
            }
            self._logger.emit(
                LogRecord(
                    event_name=sc.EVENT_GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS,
                    context=context,
                    attributes=attributes,
                )
            )


def _set(span: trace.Span, build: Callable[..., dict[str, Any]], *args: Any) -> None:
    span.set_attributes(build(*args))


def _record_exception(span: trace.Span, exc: BaseException) -> None:
    span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)))
