"""Spans that trace backends can store: within the SDK's default limits, and only finite numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tiny_models
from conftest import early_warning_profiles
from injections import StepCounter, layer_output_hook
from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.signals.calibration import ProfileBuilder
from tiny_tokenizer import tiny_tokenizer

DEFAULT_ATTRIBUTE_LIMIT = 128
DEFAULT_EVENT_LIMIT = 128


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            json.loads(value, parse_constant=lambda name: float("nan"))
        except ValueError:
            return True  # not JSON: plain text
        return "NaN" not in value and "Infinity" not in value
    return True


@pytest.fixture
def maximum(tmp_path) -> tuple[InMemorySpanExporter, CoreVitalInstrumentor]:
    """Every option that adds telemetry: attention, a calibration profile, content on the span and in
    an event, stop_on — with the SDK's default span limits."""
    calibration = tmp_path / "calibration.json"
    builder = ProfileBuilder("LlamaForCausalLM")
    builder.add({"entropy": [5.0, 6.0, 7.0], "margin": [0.1, 0.2]}, {"hidden.l2_norm": [[1.0] * 6] * 3})
    builder.build().save(calibration)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # default SpanLimits: 128 attributes, 128 events
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(
        tracer_provider=provider,
        capture="attention",
        calibration_profile=str(calibration),
        capture_content="SPAN_AND_EVENT",
        stop_on="repetition_loop,nan_detected,inf_detected,margin_collapsed,entropy_margin_divergence",
        profiles_dir=early_warning_profiles(tmp_path / "profiles"),  # early warnings are opt-in
    )
    yield exporter, instrumentor
    instrumentor.uninstrument()


def _check(span: Any) -> None:
    assert len(span.attributes) <= DEFAULT_ATTRIBUTE_LIMIT
    assert span.dropped_attributes == 0, len(span.attributes)
    assert span.dropped_events == 0, len(span.events)
    for key, value in span.attributes.items():
        assert _finite(value), key
    for event in span.events:
        assert span.dropped_events == 0 and event.dropped_attributes == 0
        for key, value in event.attributes.items():
            assert _finite(value), (event.name, key)


def test_maximum_configuration_on_a_failing_batch_stays_within_limits(maximum) -> None:
    exporter, _ = maximum
    torch.manual_seed(3)
    model = tiny_models.llama(num_hidden_layers=6)
    counter = StepCounter(model)
    model.model.layers[2].register_forward_hook(
        layer_output_hook(lambda h: h * 1e4 if counter.step >= 3 else h)  # a middle layer explodes
    )
    tokenizer = tiny_tokenizer()
    inputs = tokenizer(
        ["w10 w11 w12 w13", "w20 w21 w22 w23"], return_tensors="pt", return_token_type_ids=False
    )
    model.generate(
        **inputs, max_new_tokens=16, do_sample=True, temperature=0.9, top_k=20, top_p=0.95,
        num_return_sequences=4, tokenizer=tokenizer,
    )  # fmt: skip
    (span,) = exporter.get_finished_spans()
    _check(span)
    a = span.attributes
    # the fullest read-out: flags, blame, interventions, calibration, content, per-sequence arrays
    assert a[sc.COREVITAL_FLAG_MID_LAYER_ANOMALY] and sc.COREVITAL_INTERVENTION_SIGNAL in a
    assert sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE in a and sc.GEN_AI_INPUT_MESSAGES in a
    assert len(a[sc.COREVITAL_SEQUENCE_RISK_SCORES]) == 8
    assert sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN in a
    print(f"maximum configuration: {len(a)} attributes, {len(span.events)} events")


def test_a_large_batch_omits_events_rather_than_losing_them(maximum) -> None:
    exporter, _ = maximum
    torch.manual_seed(5)
    tiny_models.llama().generate(**tiny_models.prompt(batch=60), max_new_tokens=12, do_sample=True,
                                 num_return_sequences=2)  # fmt: skip
    (span,) = exporter.get_finished_spans()
    _check(span)
    assert len(span.events) <= 96
    assert span.attributes[sc.COREVITAL_EVENTS_OMITTED] >= 120 - 96


def test_undefined_values_never_reach_an_attribute(maximum) -> None:
    """Beam search leaves surprisal undefined; the first steps have no state similarity."""
    exporter, _ = maximum
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=6, num_beams=3, do_sample=False)
    (span,) = exporter.get_finished_spans()
    _check(span)
    assert sc.COREVITAL_SURPRISAL_SERIES not in span.attributes
