"""The one writer of telemetry, given a call record built from a read-out of recorded arrays: what it
writes on the span and in the metrics, and that one failing step costs only itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.capture import Recording, StepLayout, Steps
from opentelemetry.instrumentation.corevital.generation import GenerationOutcome, GenerationRequest
from opentelemetry.instrumentation.corevital.lifecycle import Call
from opentelemetry.instrumentation.corevital.profiles import ModelProfile
from opentelemetry.instrumentation.corevital.readout import read_out
from opentelemetry.instrumentation.corevital.summaries import summarize_logits
from opentelemetry.instrumentation.corevital.telemetry import CallRecord, Instruments, Writer


def writer() -> tuple[Writer, InMemorySpanExporter, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    return (
        Writer(tracer_provider.get_tracer("test"), Instruments(meter), None, max_points=16),
        exporter,
        reader,
    )


def record(call: Call) -> CallRecord:
    """The record of a 4-step call, read out of recorded logits."""
    logits = torch.randn(4, 1, 10, generator=torch.Generator().manual_seed(2))
    packed = torch.stack([summarize_logits(logits[t])[0] for t in range(4)]).double().numpy()
    steps = Steps(StepLayout(), packed, np.full((4, 1), 0.25))
    request = GenerationRequest(
        model_name="tiny", prompt_length=2, input_ids=torch.ones(1, 2, dtype=torch.long), max_new_tokens=4
    )
    outcome = GenerationOutcome([4], [sc.FINISH_REASON_LENGTH], torch.ones(1, 6, dtype=torch.long))
    capture, health = read_out(Recording("logits", steps), request, outcome, ModelProfile(), model="tiny")
    call.request = request
    return CallRecord(request, 0.0, 0.5, outcome=outcome, capture=capture, health=health,
                      capture_level="logits", internal_errors=call.errors)  # fmt: skip


def metric_names(reader: InMemoryMetricReader) -> set[str]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_the_span_and_the_metrics_carry_the_read_out() -> None:
    out, exporter, reader = writer()
    call = Call(started=0.0, log_once=lambda where, exc: None)
    rec = record(call)
    span = out.start_span(rec.request, call.guard)
    out.finish(span, rec, call.guard)
    (finished,) = exporter.get_finished_spans()
    a: Any = finished.attributes
    assert finished.name == f"{sc.GEN_AI_OPERATION_TEXT_COMPLETION} tiny"
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 4 and a[sc.COREVITAL_STEPS] == 4
    assert rec.health is not None and abs(a[sc.COREVITAL_RISK_SCORE] - rec.health.risk_score) < 1e-6
    assert sc.COREVITAL_ERROR_TYPE not in a and not call.errors
    names = metric_names(reader)
    assert {sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION, sc.METRIC_COREVITAL_RISK_SCORE} <= names


def test_a_failing_step_costs_only_itself_and_is_counted() -> None:
    out, exporter, reader = writer()
    logged: list[str] = []
    call = Call(started=0.0, log_once=lambda where, exc: logged.append(where))
    rec = record(call)
    span = out.start_span(rec.request, call.guard)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a broken exporter")

    out._instruments.record_call = broken  # type: ignore[method-assign]
    out.finish(span, rec, call.guard)
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes[sc.COREVITAL_ERROR_TYPE] == "RuntimeError"  # type: ignore[index]
    assert sc.COREVITAL_RISK_SCORE in finished.attributes  # type: ignore[operator]
    assert logged == ["recording metrics"] and call.errors == ["RuntimeError"]
    assert sc.METRIC_COREVITAL_INTERNAL_ERRORS in metric_names(reader)
