"""Instrument / uninstrument, nesting, suppression, sampling and failure handling."""

from __future__ import annotations

import logging
import threading

import pytest
import torch
import transformers
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode
from transformers import LlamaForCausalLM
from transformers.generation.utils import GenerationMixin

import tiny_models
from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.capture import steps as steps_module
from outputs import assert_identical


class OverridingLlama(LlamaForCausalLM):
    """A model class whose generate wraps super().generate, as several HF classes do."""

    def generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("max_new_tokens", 3)
        return super().generate(*args, **kwargs)


def test_one_span_for_an_overriding_generate(instrument, telemetry) -> None:
    model = OverridingLlama(tiny_models.llama().config).eval()
    instrument()
    model.generate(**tiny_models.prompt(), do_sample=False)
    assert len(telemetry.spans()) == 1


def test_generate_nested_inside_generate_is_not_a_second_span(instrument, telemetry) -> None:
    """E.g. an assistant model's generate running inside the main generate."""
    model, inner = tiny_models.llama(), tiny_models.qwen2()
    inputs = tiny_models.prompt()
    inner_outputs = []
    model.register_forward_pre_hook(
        lambda *_: inner_outputs.append(inner.generate(**inputs, max_new_tokens=2, do_sample=False))
    )
    instrument()
    model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    span = telemetry.span()
    assert len(inner_outputs) == 4
    assert span.attributes[sc.COREVITAL_STEPS] == 4  # the inner model's forwards are not mixed in
    assert span.attributes[sc.GEN_AI_REQUEST_MODEL] == "LlamaForCausalLM"


def test_uninstrument_removes_wrapper_and_hooks(instrument, telemetry) -> None:
    model = tiny_models.llama()
    original = GenerationMixin.__dict__["generate"]
    instrumentor = instrument()
    assert GenerationMixin.__dict__["generate"] is not original
    model.generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)
    assert len(model._forward_hooks) == 1 and len(model._forward_pre_hooks) == 1
    instrumentor.uninstrument()
    assert GenerationMixin.__dict__["generate"] is original
    assert len(model._forward_hooks) == 0 and len(model._forward_pre_hooks) == 0
    model.generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)
    assert len(telemetry.spans()) == 1


def test_instrumentor_is_a_singleton_that_keeps_its_hooks(instrument, telemetry) -> None:
    model = tiny_models.llama()
    instrument()
    model.generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)
    CoreVitalInstrumentor().uninstrument()  # a new handle on the same instrumentor
    assert len(model._forward_hooks) == 0


def test_suppressed_instrumentation_emits_nothing(instrument, telemetry) -> None:
    model = tiny_models.llama()
    instrument()
    with suppress_instrumentation():
        model.generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)
    assert telemetry.spans() == []
    assert telemetry.metrics() == {}


def test_unsampled_span_pays_for_no_capture(telemetry, monkeypatch) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(telemetry.exporter))
    calls: list[int] = []
    real = steps_module.summarize_logits
    monkeypatch.setattr(steps_module, "summarize_logits", lambda x: calls.append(1) or real(x))
    model = tiny_models.llama()
    seen_flags: list[object] = []
    model.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen_flags.append(kwargs.get("output_hidden_states")), with_kwargs=True
    )
    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=telemetry.meter_provider)
    try:
        model.generate(**tiny_models.prompt(), max_new_tokens=3, do_sample=False)
    finally:
        instrumentor.uninstrument()
    assert telemetry.spans() == []
    assert calls == []
    assert not any(seen_flags)
    # GenAI metrics are still recorded for unsampled calls
    assert sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION in telemetry.metrics()
    assert sc.METRIC_COREVITAL_STEP_ENTROPY not in telemetry.metrics()


def test_internal_failure_is_recorded_not_raised(instrument, telemetry, monkeypatch, caplog) -> None:
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)

    def broken(logits: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    monkeypatch.setattr(steps_module, "summarize_logits", broken)
    instrument()
    with caplog.at_level(logging.WARNING):
        first = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        second = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert_identical(plain, first)
    assert_identical(plain, second)
    for span in telemetry.spans():
        assert span.attributes[sc.COREVITAL_ERROR_TYPE] == "RuntimeError"
        assert span.status.status_code is StatusCode.UNSET
        assert sc.GEN_AI_USAGE_OUTPUT_TOKENS in span.attributes  # GenAI telemetry survives
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1  # logged once


def test_a_failed_assessment_keeps_the_capture(instrument, telemetry, monkeypatch) -> None:
    """The capture report and the assessment are guarded apart: when drawing the conclusions fails,
    the span keeps the per-step series, the capture level and the time to first token."""
    from opentelemetry.instrumentation.corevital import readout

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("assessment")

    monkeypatch.setattr(readout, "assess_report", broken)
    instrument()
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=5, min_new_tokens=5, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_ERROR_TYPE] == "RuntimeError"
    assert a[sc.COREVITAL_CAPTURE_LEVEL] == "hidden" and len(a[sc.COREVITAL_ENTROPY_SERIES]) == 5
    assert sc.COREVITAL_RISK_SCORE not in a
    assert sc.METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN in telemetry.metrics()


def test_model_exception_passes_through_unchanged(instrument, telemetry) -> None:
    model = tiny_models.llama()
    error = ValueError("user error")

    def failing_forward(module, args, kwargs):  # type: ignore[no-untyped-def]
        raise error

    handle = model.register_forward_pre_hook(failing_forward, with_kwargs=True)
    instrument()
    with pytest.raises(ValueError) as raised:
        model.generate(**tiny_models.prompt(), max_new_tokens=3)
    handle.remove()
    assert raised.value is error
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "ValueError"
    assert any(event.name == "exception" for event in span.events)
    duration = telemetry.metrics()[sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION].data.data_points[0]
    assert duration.attributes[sc.ERROR_TYPE] == "ValueError"


def test_attention_kernel_restored_after_model_exception(instrument, telemetry) -> None:
    model = tiny_models.llama()
    assert model.config._attn_implementation != "eager"
    before = model.config._attn_implementation

    def failing(module, args, kwargs):  # type: ignore[no-untyped-def]
        raise KeyError("x")

    handle = model.register_forward_pre_hook(failing, with_kwargs=True)
    instrument(capture="attention")
    with pytest.raises(KeyError):
        model.generate(**tiny_models.prompt(), max_new_tokens=3)
    handle.remove()
    assert model.config._attn_implementation == before


def test_concurrent_threads_get_their_own_sessions(instrument, telemetry) -> None:
    model = tiny_models.llama()
    instrument()
    lengths = [3, 9]
    threads = [
        threading.Thread(
            target=model.generate,
            kwargs={**tiny_models.prompt(), "max_new_tokens": n, "min_new_tokens": n, "do_sample": False},
        )
        for n in lengths
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = telemetry.spans()
    assert sorted(span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] for span in spans) == lengths
    if transformers.__version__.startswith("4."):
        # transformers 4.x collects hidden states through hooks shared by all threads, so two
        # concurrent calls on one model can see each other's layers: CoreVital notices and says so.
        for span in spans:
            if sc.COREVITAL_ERROR_TYPE in span.attributes:
                continue
            assert span.attributes[sc.COREVITAL_STEPS] == span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS]
        return
    steps = sorted(span.attributes[sc.COREVITAL_STEPS] for span in spans)
    assert steps == lengths


def test_direct_forward_calls_are_untouched(instrument, telemetry) -> None:
    model = tiny_models.llama()
    instrument()
    model.generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)  # hooks now registered
    out = model(**tiny_models.prompt())
    assert out.hidden_states is None and out.attentions is None
    assert len(telemetry.spans()) == 1
