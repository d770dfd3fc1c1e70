"""Faults injected into tiny models must show up where a user would look: flags, risk, blame, events."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import tiny_models
from injections import StepCounter, layer_output_hook, one_hot_attention
from opentelemetry.instrumentation.corevital import semconv as sc

TRANSFORMERS_5 = not transformers.__version__.startswith("4.")


def events(span, name: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [dict(e.attributes) for e in span.events if e.name == name]


def test_nan_in_a_middle_layer_at_step_t(instrument, telemetry) -> None:
    model = tiny_models.llama(num_hidden_layers=6)
    counter = StepCounter(model)
    nan_step, nan_layer = 3, 2

    def poison(hidden: torch.Tensor) -> torch.Tensor:
        return torch.full_like(hidden, float("nan")) if counter.step == nan_step else hidden

    model.model.layers[nan_layer].register_forward_hook(layer_output_hook(poison))
    instrument()
    model.generate(**tiny_models.prompt(), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    span = telemetry.span()
    a = span.attributes
    assert a[sc.COREVITAL_FLAG_NAN_DETECTED] is True
    assert sc.FLAG_NAN_DETECTED in a[sc.COREVITAL_FLAGS]
    assert a[sc.COREVITAL_RISK_SCORE] == 1.0
    assert a[sc.COREVITAL_RISK_BAND] == "high"
    # transformers 4.x hands out each layer's hidden state one index later than 5.x does
    first = nan_layer if TRANSFORMERS_5 else nan_layer + 1
    assert a[sc.COREVITAL_LAYER_BLAME_LAYERS][0] == first
    details = json.loads(a[sc.COREVITAL_LAYER_BLAME_DETAILS])
    assert details[0]["layer"] == first and details[0]["severity"] == 1.0
    assert details[0]["reasons"][0] == "nan_or_inf"
    assert a[sc.COREVITAL_HIDDEN_LAYER_NAN_COUNT][first] > 0
    assert a[sc.COREVITAL_HIDDEN_LAYER_NAN_COUNT][first - 1] == 0
    flag_events = events(span, sc.EVENT_COREVITAL_HEALTH_FLAG)
    nan_events = [e for e in flag_events if e[sc.COREVITAL_FLAG_NAME] == sc.FLAG_NAN_DETECTED]
    assert len(nan_events) == 1 and nan_events[0][sc.COREVITAL_STEP] == nan_step
    assert "risk is high" in a[sc.COREVITAL_NARRATIVE].lower()


def test_middle_layers_scaled_by_100(instrument, telemetry) -> None:
    model = tiny_models.llama(num_hidden_layers=6)
    middle = (2, 3)
    for index in middle:
        model.model.layers[index].register_forward_hook(layer_output_hook(lambda h: h * 100.0))
    instrument()
    model.generate(**tiny_models.prompt(), max_new_tokens=10, min_new_tokens=10, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_FLAG_MID_LAYER_ANOMALY] is True
    assert a[sc.COREVITAL_RISK_SCORE] >= 0.7
    blamed = {d["layer"]: d["reasons"] for d in json.loads(a[sc.COREVITAL_LAYER_BLAME_DETAILS])}
    shift = 0 if TRANSFORMERS_5 else 1  # see test_nan_in_a_middle_layer_at_step_t
    assert any("mid_layer_anomaly" in blamed.get(index + shift, []) for index in middle)
    assert all(
        index + shift in blamed for index in middle if index + shift < 4
    )  # 4 = end of the middle third
    assert 0 not in blamed and 1 not in blamed


def test_healthy_tiny_model_has_no_mid_layer_or_nan_flag(instrument, telemetry) -> None:
    model = tiny_models.llama(num_hidden_layers=6)
    instrument()
    model.generate(**tiny_models.prompt(), max_new_tokens=10, min_new_tokens=10, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_FLAG_MID_LAYER_ANOMALY] is False
    assert a[sc.COREVITAL_FLAG_NAN_DETECTED] is False
    assert "nan_or_inf" not in a[sc.COREVITAL_LAYER_BLAME_DETAILS]


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_one_hot_attention_collapses(instrument, telemetry, kernel: str) -> None:
    model = tiny_models.llama(num_hidden_layers=4, attn_implementation=kernel)
    one_hot_attention(model)
    instrument(capture="attention")
    model.generate(**tiny_models.prompt(), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    span = telemetry.span()
    a = span.attributes
    assert a[sc.COREVITAL_FLAG_ATTENTION_COLLAPSE] is True
    assert a[sc.COREVITAL_FLAG_ATTENTION_COLLAPSE_SEVERITY] == 0.8
    heads = model.config.num_attention_heads
    assert a[sc.COREVITAL_ATTENTION_LAYER_COLLAPSED_HEADS_MEAN] == (float(heads),) * 4
    assert any(
        e[sc.COREVITAL_FLAG_NAME] == "attention_collapse"
        for e in events(span, sc.EVENT_COREVITAL_HEALTH_FLAG)
    )
    assert a[sc.COREVITAL_RISK_SCORE] >= 0.8
