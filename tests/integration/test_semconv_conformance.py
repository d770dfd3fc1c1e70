"""Conformance: what the instrumentation emits and what the registry declares are the same set.

Instrumented generations exercise everything (batch, seq2seq, attention capture, content capture
on and off, a calibration profile, an injected NaN, an intervention, failures) with in-memory span,
metric and log exporters. Then (a) every emitted attribute, event, metric, unit and instrument type
is declared in ``semconv/`` with a matching value type, and (b) every registry entry was emitted by
at least one scenario.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import Histogram, Sum
from transformers import GenerationConfig, LlamaForCausalLM

import tiny_models
from injections import StepCounter, layer_output_hook, one_hot_attention
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.capture import steps as steps_module
from opentelemetry.instrumentation.corevital.signals.calibration import ProfileBuilder
from tiny_tokenizer import tiny_tokenizer

pytest.importorskip("jinja2")
SEMCONV = Path(__file__).resolve().parents[2] / "semconv"

# Value types of the OpenTelemetry attributes the registry references (GenAI and error spec).
UPSTREAM_TYPES = {
    sc.GEN_AI_OPERATION_NAME: "string",
    sc.GEN_AI_PROVIDER_NAME: "string",
    sc.GEN_AI_REQUEST_MODEL: "string",
    sc.GEN_AI_REQUEST_MAX_TOKENS: "int",
    sc.GEN_AI_REQUEST_TEMPERATURE: "double",
    sc.GEN_AI_REQUEST_TOP_P: "double",
    sc.GEN_AI_REQUEST_TOP_K: "double",
    sc.GEN_AI_REQUEST_SEED: "int",
    sc.GEN_AI_REQUEST_CHOICE_COUNT: "int",
    sc.GEN_AI_RESPONSE_FINISH_REASONS: "string[]",
    sc.GEN_AI_USAGE_INPUT_TOKENS: "int",
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: "int",
    sc.GEN_AI_INPUT_MESSAGES: "any",
    sc.GEN_AI_OUTPUT_MESSAGES: "any",
    sc.GEN_AI_TOKEN_TYPE: "string",
    sc.GEN_AI_EVALUATION_NAME: "string",
    sc.GEN_AI_EVALUATION_SCORE_VALUE: "double",
    sc.GEN_AI_EVALUATION_SCORE_LABEL: "string",
    sc.GEN_AI_EVALUATION_EXPLANATION: "string",
    sc.ERROR_TYPE: "string",
}


SPAN = "span"  # the one span kind CoreVital emits (``text_completion {model}``)


def load_registry() -> Any:
    spec = importlib.util.spec_from_file_location("semconv_generate_conformance", SEMCONV / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module.load()


def value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (tuple, list)):
        kinds = {value_type(v) for v in value} or {"empty"}
        return "empty[]" if kinds == {"empty"} else f"{kinds.pop()}[]" if len(kinds) == 1 else "mixed[]"
    return type(value).__name__


class Emitted:
    """Everything the scenarios emitted, by kind."""

    def __init__(self) -> None:
        self.attributes: dict[str, list[Any]] = defaultdict(list)  # key -> values (span, events, logs)
        self.where: dict[str, set[str]] = defaultdict(set)  # signal name -> attribute keys
        self.events: set[str] = set()
        self.metrics: dict[str, Any] = {}

    def add(self, signal: str, attributes: dict[str, Any]) -> None:
        for key, value in attributes.items():
            self.attributes[key].append(value)
            self.where[signal].add(key)


class NarrowForward(LlamaForCausalLM):
    """A user's model class whose forward passes on only what it names (no output_* flags)."""

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, **kwargs):  # type: ignore[no-untyped-def]
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, past_key_values=past_key_values,
            use_cache=kwargs.get("use_cache"), cache_position=kwargs.get("cache_position"),
            position_ids=kwargs.get("position_ids"),
        )  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> Any:
    return load_registry()


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> Emitted:
    from conftest import Telemetry, early_warning_profiles, synthetic_baseline
    from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor

    telemetry = Telemetry()
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    instrumentor = CoreVitalInstrumentor()

    # every event and metric must be emitted, so the (opt-in) early-warning detectors are on; the
    # tiny 4-layer llama has a healthy baseline (corevital.baseline.*), the 6-layer one has none
    profiles = early_warning_profiles(tmp_path_factory.mktemp("profiles"))
    llama = Path(profiles) / "llama.yaml"
    with llama.open("a") as profile:
        profile.write(yaml.safe_dump({"baselines": [synthetic_baseline(layers=4, norm=1.0, entropy=3.0)]}))

    def instrument(**options: Any) -> None:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            logger_provider=logger_provider,
            profiles_dir=profiles,
            **options,
        )

    calibration = tmp_path_factory.mktemp("calibration") / "profile.json"
    builder = ProfileBuilder("LlamaForCausalLM")
    builder.add({"entropy": np.linspace(5, 7, 20)}, {"hidden.l2_norm": np.ones((20, 4))})
    builder.build().save(calibration)
    try:
        # batch with sampling parameters, several return sequences and a seed
        instrument(calibration_profile=str(calibration))
        config = GenerationConfig(
            do_sample=True, temperature=0.8, top_p=0.9, top_k=20, num_return_sequences=2
        )
        config.seed = 7
        tiny_models.llama().generate(**tiny_models.prompt(batch=2, padded=True), generation_config=config,
                                     max_new_tokens=8)  # fmt: skip
        # seq2seq with attention capture
        instrument(capture="attention")
        tiny_models.bart().generate(**tiny_models.prompt(), max_new_tokens=6, do_sample=False)
        tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=6, do_sample=False)
        # content capture on the span and in an event, logits level
        instrument(capture="logits", capture_content="SPAN_AND_EVENT")
        tokenizer = tiny_tokenizer()
        inputs = tokenizer("w10 w11 w12", return_tensors="pt", return_token_type_ids=False)
        tiny_models.llama().generate(**inputs, max_new_tokens=5, do_sample=False, tokenizer=tokenizer)
        # one-hot attention: attention collapse and the attention bottleneck compound signal
        instrument(capture="attention")
        collapsed = tiny_models.llama()
        one_hot_attention(collapsed)
        collapsed.generate(**tiny_models.prompt(), max_new_tokens=8, min_new_tokens=8, do_sample=False)
        # NaN injected in a middle layer, with stop_on: a flag, blame and an intervention
        instrument(stop_on="nan_detected")
        model = tiny_models.llama(num_hidden_layers=6)
        counter = StepCounter(model)
        model.model.layers[2].register_forward_hook(
            layer_output_hook(lambda h: torch.full_like(h, float("nan")) if counter.step == 2 else h)
        )
        model.generate(**tiny_models.prompt(), max_new_tokens=8, do_sample=False)
        # a batch whose sequence events do not all fit the span's event budget
        instrument(capture="logits")
        tiny_models.llama().generate(**tiny_models.prompt(batch=100), max_new_tokens=2, do_sample=False)
        # attention asked for, but the model's own forward takes no output_* flags
        instrument(capture="attention")
        NarrowForward(tiny_models.llama().config).eval().generate(
            **tiny_models.prompt(), max_new_tokens=3, do_sample=False
        )
        # the model raises
        instrument()
        failing = tiny_models.llama()
        failing.register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(ValueError("model failure")))
        with pytest.raises(ValueError):
            failing.generate(**tiny_models.prompt(), max_new_tokens=3)
        # CoreVital itself fails
        real = steps_module.summarize_logits
        steps_module.summarize_logits = lambda logits: (_ for _ in ()).throw(RuntimeError("internal"))
        try:
            tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=3, do_sample=False)
        finally:
            steps_module.summarize_logits = real
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()

    result = Emitted()
    for span in telemetry.spans():
        result.add(SPAN, dict(span.attributes))
        for event in span.events:
            if event.name == "exception":  # the SDK's own exception event
                continue
            result.events.add(event.name)
            result.add(event.name, dict(event.attributes))
    for log in logs.get_finished_logs():
        record = log.log_record
        result.events.add(record.event_name)
        result.add(record.event_name, dict(record.attributes))
    result.metrics = telemetry.metrics()
    for name, metric in result.metrics.items():
        for point in metric.data.data_points:
            result.add(name, dict(point.attributes))
    return result


def declared_types(registry: Any) -> dict[str, str]:
    types = dict(UPSTREAM_TYPES)
    for group in registry.attribute_groups:
        for attribute in group.attributes:
            types[attribute.id] = attribute.enum_type if attribute.type == "enum" else attribute.type
    return types


def test_every_emitted_attribute_is_declared_with_its_type(registry, emitted) -> None:
    types = declared_types(registry)
    enums = {
        a.id: {m.value for m in a.members}
        for g in registry.attribute_groups
        for a in g.attributes
        if a.members
    }
    for key, values in emitted.attributes.items():
        assert key in types, f"{key} is emitted but not declared in semconv/"
        for value in values:
            kind = value_type(value)
            if types[key] == "any" or (kind == "empty[]" and types[key].endswith("[]")):
                continue
            assert kind == types[key], f"{key}: emitted {kind} {value!r}, declared {types[key]}"
            if key in enums:
                assert value in enums[key], f"{key}: {value!r} is not a declared member"


def test_attributes_are_used_where_declared(registry, emitted) -> None:
    (span,) = registry.spans
    signals = {s.name: s for s in registry.events + registry.metrics} | {SPAN: span}
    for signal_name, keys in emitted.where.items():
        assert signal_name in signals, f"{signal_name} is emitted but not declared"
        declared = {use.id for use in signals[signal_name].attributes}
        assert keys <= declared, f"{signal_name} carries undeclared {sorted(keys - declared)}"


def test_every_event_and_metric_is_declared(registry, emitted) -> None:
    assert emitted.events == {e.name for e in registry.events}
    metrics = {m.name: m for m in registry.metrics}
    assert set(emitted.metrics) == set(metrics)
    for name, metric in emitted.metrics.items():
        declared = metrics[name]
        assert metric.unit == declared.unit, name
        kind = (
            "histogram"
            if isinstance(metric.data, Histogram)
            else "counter"
            if isinstance(metric.data, Sum)
            else "?"
        )
        assert kind == declared.instrument, name
        if declared.buckets:
            assert tuple(metric.data.data_points[0].explicit_bounds) == tuple(declared.buckets), name


def test_no_dead_registry_entries(registry, emitted) -> None:
    declared = {a.id for g in registry.attribute_groups for a in g.attributes if not a.deprecated}
    declared |= {
        use.id for signal in registry.spans + registry.events + registry.metrics for use in signal.attributes
    }
    never = sorted(declared - set(emitted.attributes))
    assert never == [], f"declared in semconv/ but emitted by no scenario: {never}"


def test_enum_members_are_all_reachable_in_code(registry) -> None:
    """Enum members list what the code can emit; none is a typo of an emitted value."""
    from opentelemetry.instrumentation.corevital import semconv as sc

    values = {v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str)}
    for group in registry.attribute_groups:
        for attribute in group.attributes:
            for member in attribute.members:
                assert member.value in values, f"{attribute.id}: member {member.value!r} has no constant"


def test_evidence_is_json(emitted) -> None:
    for value in emitted.attributes.get(sc.COREVITAL_EVIDENCE, []):
        assert isinstance(json.loads(value), dict)
