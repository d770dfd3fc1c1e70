"""What a span and the metrics carry: exact names, types and values."""

from __future__ import annotations

import json
import math

import pytest
import torch
from opentelemetry.trace import SpanKind, StatusCode

import tiny_models
from opentelemetry.instrumentation.corevital import semconv as sc
from tiny_tokenizer import tiny_tokenizer

SERIES_STATS = [
    (sc.COREVITAL_ENTROPY_MEAN, sc.COREVITAL_ENTROPY_MIN, sc.COREVITAL_ENTROPY_MAX,
     sc.COREVITAL_ENTROPY_SERIES),
    (sc.COREVITAL_MARGIN_MEAN, sc.COREVITAL_MARGIN_MIN, sc.COREVITAL_MARGIN_MAX, sc.COREVITAL_MARGIN_SERIES),
    (sc.COREVITAL_TOPK_MASS_MEAN, sc.COREVITAL_TOPK_MASS_MIN, sc.COREVITAL_TOPK_MASS_MAX,
     sc.COREVITAL_TOPK_MASS_SERIES),
    (sc.COREVITAL_TOP1_PROB_MEAN, sc.COREVITAL_TOP1_PROB_MIN, sc.COREVITAL_TOP1_PROB_MAX,
     sc.COREVITAL_TOP1_PROB_SERIES),
    (sc.COREVITAL_SURPRISAL_MEAN, sc.COREVITAL_SURPRISAL_MIN, sc.COREVITAL_SURPRISAL_MAX,
     sc.COREVITAL_SURPRISAL_SERIES),
]  # fmt: skip
HIDDEN_STATS = [
    (sc.COREVITAL_HIDDEN_L2_NORM_MEAN, sc.COREVITAL_HIDDEN_L2_NORM_MIN, sc.COREVITAL_HIDDEN_L2_NORM_MAX,
     sc.COREVITAL_HIDDEN_L2_NORM_SERIES),
    (sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_MEAN, sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_MIN,
     sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_MAX, sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_SERIES),
]  # fmt: skip
HIDDEN_LAYER_FLOATS = [
    sc.COREVITAL_HIDDEN_LAYER_L2_NORM_MEAN, sc.COREVITAL_HIDDEN_LAYER_L2_NORM_MAX,
    sc.COREVITAL_HIDDEN_LAYER_STD_MEAN, sc.COREVITAL_HIDDEN_LAYER_MEAN_MEAN,
    sc.COREVITAL_HIDDEN_LAYER_MAX_ABS,
]  # fmt: skip
HIDDEN_LAYER_INTS = [sc.COREVITAL_HIDDEN_LAYER_NAN_COUNT, sc.COREVITAL_HIDDEN_LAYER_INF_COUNT]
ATTENTION_STATS = [
    (sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MEAN, sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MIN,
     sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MAX, sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_SERIES),
    (sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_MEAN, sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_MIN,
     sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_MAX, sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_SERIES),
]  # fmt: skip
ATTENTION_LAYER_FLOATS = [
    sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN, sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MIN,
    sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MAX, sc.COREVITAL_ATTENTION_LAYER_ENTROPY_NORMALIZED_MEAN,
    sc.COREVITAL_ATTENTION_LAYER_CONCENTRATION_MEAN, sc.COREVITAL_ATTENTION_LAYER_COLLAPSED_HEADS_MEAN,
    sc.COREVITAL_ATTENTION_LAYER_FOCUSED_HEADS_MEAN,
]  # fmt: skip


ATTENTION_KEYS = {key for keys in ATTENTION_STATS for key in keys} | set(ATTENTION_LAYER_FLOATS)
HIDDEN_KEYS = (
    {key for keys in HIDDEN_STATS for key in keys} | set(HIDDEN_LAYER_FLOATS) | set(HIDDEN_LAYER_INTS)
)


# Steps at the start of a series where it is undefined (left out of the exported array).
UNDEFINED_LEADING_STEPS = {
    sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_SERIES: 1,
    sc.COREVITAL_HIDDEN_MAX_SIMILARITY_SERIES: 2,
}


def assert_stats(attributes, keys, steps: int) -> None:
    mean, low, high, series = keys
    for key in (mean, low, high):
        assert type(attributes[key]) is float, key
    assert attributes[low] <= attributes[mean] <= attributes[high]
    values = attributes[series]
    expected = steps - UNDEFINED_LEADING_STEPS.get(series, 0)
    assert isinstance(values, tuple) and len(values) == expected, series
    assert all(type(v) is float and math.isfinite(v) for v in values)


def test_greedy_span_attributes_names_and_types(instrument, telemetry) -> None:
    model = tiny_models.llama()
    inputs = tiny_models.prompt(batch=1, length=5)
    instrument(capture="hidden")
    out = model.generate(**inputs, max_new_tokens=7, do_sample=False)
    span = telemetry.span()
    assert span.name == "text_completion LlamaForCausalLM"  # no name_or_path: the class name
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    a = span.attributes
    assert a[sc.GEN_AI_OPERATION_NAME] == "text_completion"
    assert a[sc.GEN_AI_PROVIDER_NAME] == "huggingface"
    assert a[sc.GEN_AI_REQUEST_MODEL] == "LlamaForCausalLM"
    assert a[sc.GEN_AI_REQUEST_MAX_TOKENS] == 7
    generated = out.shape[1] - 5
    eos_at = (out[0, 5:] == tiny_models.EOS).nonzero()
    expected_output = int(eos_at[0]) + 1 if len(eos_at) else generated
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 5
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == expected_output
    assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",) if len(eos_at) else ("length",)
    for key in (sc.GEN_AI_REQUEST_TEMPERATURE, sc.GEN_AI_REQUEST_TOP_P, sc.GEN_AI_REQUEST_TOP_K):
        assert key not in a  # greedy: sampling parameters do not apply
    assert a[sc.COREVITAL_CAPTURE_LEVEL] == "hidden"
    assert a[sc.COREVITAL_SEQUENCE_COUNT] == 1
    assert a[sc.COREVITAL_STEPS] == expected_output
    assert a[sc.COREVITAL_SERIES_SEQUENCE_INDEX] == 0
    assert a[sc.COREVITAL_SERIES_STEP_STRIDE] == 1
    for keys in SERIES_STATS + HIDDEN_STATS:
        assert_stats(a, keys, expected_output)
    layers = model.config.num_hidden_layers
    for key in HIDDEN_LAYER_FLOATS:
        assert len(a[key]) == layers and all(type(v) is float for v in a[key]), key
    for key in HIDDEN_LAYER_INTS:
        assert a[key] == (0,) * layers
    assert a[sc.COREVITAL_HIDDEN_NAN_COUNT] == 0 and a[sc.COREVITAL_HIDDEN_INF_COUNT] == 0
    assert a[sc.COREVITAL_HIDDEN_CLIP_FRACTION] == 0.0
    # the first step has no previous vector (left out: exported values are finite); every later
    # step has a cosine in [-1, 1]
    cosines = a[sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_SERIES]
    assert len(cosines) == a[sc.COREVITAL_STEPS] - 1 and all(-1.0001 <= c <= 1.0001 for c in cosines)
    assert all(0 <= e <= math.log2(tiny_models.VOCAB) + 1e-4 for e in a[sc.COREVITAL_ENTROPY_SERIES])
    assert not set(a) & ATTENTION_KEYS
    # batch of one: the read-out is on the span, no per-sequence event
    assert not [e for e in span.events if e.name == sc.EVENT_COREVITAL_SEQUENCE]


def test_surprisal_matches_the_returned_tokens(instrument, telemetry) -> None:
    model = tiny_models.llama()
    inputs = tiny_models.prompt(batch=1, length=4)
    instrument(capture="logits")
    out = model.generate(
        **inputs, max_new_tokens=6, do_sample=True, top_k=0, return_dict_in_generate=True, output_logits=True
    )
    expected = [
        float(-torch.log_softmax(logits[0].float(), -1)[token] / math.log(2))
        for logits, token in zip(out.logits, out.sequences[0, 4:], strict=True)
    ]
    series = telemetry.span().attributes[sc.COREVITAL_SURPRISAL_SERIES]
    assert series == pytest.approx(expected[: len(series)], abs=1e-4)
    entropies = [
        float(-(torch.softmax(x[0].float(), -1) * torch.log_softmax(x[0].float(), -1)).sum() / math.log(2))
        for x in out.logits
    ]
    assert telemetry.span().attributes[sc.COREVITAL_ENTROPY_SERIES] == pytest.approx(
        entropies[: len(series)], abs=1e-4
    )


def test_attention_level_adds_layer_aggregates(instrument, telemetry) -> None:
    model = tiny_models.qwen2()
    instrument(capture="attention")
    model.generate(**tiny_models.prompt(), max_new_tokens=5, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_CAPTURE_LEVEL] == "attention"
    steps = a[sc.COREVITAL_STEPS]
    for keys in ATTENTION_STATS:
        assert_stats(a, keys, steps)
    for key in ATTENTION_LAYER_FLOATS:
        assert len(a[key]) == model.config.num_hidden_layers, key
    assert all(0 <= v <= 1.0001 for v in a[sc.COREVITAL_ATTENTION_LAYER_ENTROPY_NORMALIZED_MEAN])


def test_logits_level_has_no_hidden_read_out(instrument, telemetry) -> None:
    model = tiny_models.gpt2()
    instrument(capture="logits")
    model.generate(**tiny_models.prompt(), max_new_tokens=5, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_CAPTURE_LEVEL] == "logits"
    assert sc.COREVITAL_ENTROPY_SERIES in a
    assert not set(a) & (ATTENTION_KEYS | HIDDEN_KEYS)


def test_padded_batch_one_series_per_sequence_cut_at_eos(instrument, telemetry) -> None:
    model = tiny_models.llama()
    inputs = tiny_models.prompt(batch=3, padded=True)
    instrument()
    # EOS suppressed for the first 3 tokens only, so rows end at different steps
    out = model.generate(
        **inputs, max_new_tokens=25, do_sample=True, min_new_tokens=3, num_return_sequences=1
    )
    span = telemetry.span()
    a = span.attributes
    generated = out[:, inputs["input_ids"].shape[1] :]
    lengths = []
    for row in generated:
        eos = (row == tiny_models.EOS).nonzero()
        lengths.append(int(eos[0]) + 1 if len(eos) else len(row))
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == sum(lengths)
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == int(inputs["attention_mask"].sum())
    assert a[sc.COREVITAL_SEQUENCE_COUNT] == 3
    events = [e for e in span.events if e.name == sc.EVENT_COREVITAL_SEQUENCE]
    assert [e.attributes[sc.COREVITAL_SEQUENCE_INDEX] for e in events] == [0, 1, 2]
    for event, length in zip(events, lengths, strict=True):
        assert event.attributes[sc.COREVITAL_SEQUENCE_OUTPUT_TOKENS] == length
        assert len(event.attributes[sc.COREVITAL_ENTROPY_SERIES]) == length
        assert event.attributes[sc.COREVITAL_STEPS] == length
    reasons = a[sc.GEN_AI_RESPONSE_FINISH_REASONS]
    assert list(reasons) == [e.attributes[sc.COREVITAL_SEQUENCE_FINISH_REASON] for e in events]
    assert set(reasons) <= {"stop", "length"}


def test_sampling_request_parameters(instrument, telemetry) -> None:
    model = tiny_models.llama()
    instrument()
    model.generate(
        **tiny_models.prompt(), max_new_tokens=4, do_sample=True, temperature=0.7, top_p=0.8, top_k=11
    )
    a = telemetry.span().attributes
    assert a[sc.GEN_AI_REQUEST_TEMPERATURE] == pytest.approx(0.7)
    assert a[sc.GEN_AI_REQUEST_TOP_P] == pytest.approx(0.8)
    assert a[sc.GEN_AI_REQUEST_TOP_K] == 11.0
    assert type(a[sc.GEN_AI_REQUEST_TOP_K]) is float  # the GenAI spec types top_k as double


def test_series_downsampled_to_max_points(instrument, telemetry) -> None:
    model = tiny_models.llama()
    instrument(series_max_points=8)
    model.generate(**tiny_models.prompt(), max_new_tokens=30, min_new_tokens=30, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_STEPS] == 30
    assert len(a[sc.COREVITAL_ENTROPY_SERIES]) == 8
    assert a[sc.COREVITAL_SERIES_STEP_STRIDE] == 4


def test_seq2seq_span(instrument, telemetry) -> None:
    model = tiny_models.bart()
    inputs = tiny_models.prompt(batch=1, length=7)
    instrument(capture="attention")
    out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == out.shape[1] - 1  # minus the decoder start token
    assert a[sc.COREVITAL_STEPS] == out.shape[1] - 1
    assert len(a[sc.COREVITAL_HIDDEN_LAYER_L2_NORM_MEAN]) == model.config.decoder_layers
    assert len(a[sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN]) == model.config.decoder_layers


def test_metrics(instrument, telemetry) -> None:
    model = tiny_models.llama()
    instrument()
    model.generate(**tiny_models.prompt(batch=2), max_new_tokens=6, min_new_tokens=6, do_sample=False)
    a = telemetry.span().attributes
    metrics = telemetry.metrics()
    expected_units = {
        sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION: "s",
        sc.METRIC_GEN_AI_CLIENT_TOKEN_USAGE: "{token}",
        sc.METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: "s",
        sc.METRIC_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: "s",
        sc.METRIC_COREVITAL_STEP_ENTROPY: "bit",
    }
    for name, unit in expected_units.items():
        assert metrics[name].unit == unit, name
    duration = metrics[sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION].data.data_points[0]
    assert tuple(duration.explicit_bounds) == sc.BUCKETS_GEN_AI_CLIENT_OPERATION_DURATION
    assert dict(duration.attributes) == {
        sc.GEN_AI_OPERATION_NAME: "text_completion",
        sc.GEN_AI_PROVIDER_NAME: "huggingface",
        sc.GEN_AI_REQUEST_MODEL: "LlamaForCausalLM",
    }
    usage = {
        p.attributes[sc.GEN_AI_TOKEN_TYPE]: p
        for p in metrics[sc.METRIC_GEN_AI_CLIENT_TOKEN_USAGE].data.data_points
    }
    assert usage["input"].sum == a[sc.GEN_AI_USAGE_INPUT_TOKENS]
    assert usage["output"].sum == a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
    ttft = metrics[sc.METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN].data.data_points[0]
    assert tuple(ttft.explicit_bounds) == sc.BUCKETS_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
    assert 0 < ttft.sum < duration.sum
    tpot = metrics[sc.METRIC_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN].data.data_points[0]
    assert tuple(tpot.explicit_bounds) == sc.BUCKETS_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN
    assert tpot.sum == pytest.approx((duration.sum - ttft.sum) / 5, rel=0.05)
    entropy = metrics[sc.METRIC_COREVITAL_STEP_ENTROPY].data.data_points[0]
    assert entropy.count == 12  # one sample per step of each sequence
    overhead = metrics[sc.METRIC_COREVITAL_OVERHEAD_DURATION].data.data_points[0]
    assert metrics[sc.METRIC_COREVITAL_OVERHEAD_DURATION].unit == "s"
    assert overhead.count == 1 and overhead.sum > 0  # includes the read-out after the model returned
    assert dict(overhead.attributes)[sc.COREVITAL_CAPTURE_LEVEL] == "hidden"
    for metric in metrics.values():  # low cardinality: no ids, no step indices
        for point in metric.data.data_points:
            assert set(point.attributes) <= {
                sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_MODEL,
                sc.GEN_AI_TOKEN_TYPE, sc.ERROR_TYPE, sc.COREVITAL_FLAG_NAME,
                sc.COREVITAL_COMPOUND_SIGNAL_NAME, sc.COREVITAL_EARLY_WARNING_SIGNAL,
                sc.COREVITAL_INTERVENTION_SIGNAL, sc.COREVITAL_CAPTURE_LEVEL,
            }  # fmt: skip


def test_no_content_by_default(instrument, telemetry, monkeypatch) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    model = tiny_models.llama()
    tokenizer = tiny_tokenizer()
    instrument()
    inputs = tokenizer("w10 w11 w12", return_tensors="pt", return_token_type_ids=False)
    model.generate(**inputs, max_new_tokens=4, do_sample=False, tokenizer=tokenizer)
    span = telemetry.span()
    dumped = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in span.attributes.items()})
    assert "w10" not in dumped and "w11" not in dumped
    assert sc.GEN_AI_INPUT_MESSAGES not in span.attributes
    assert sc.GEN_AI_OUTPUT_MESSAGES not in span.attributes


def test_content_when_enabled(instrument, telemetry, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    model = tiny_models.llama()
    tokenizer = tiny_tokenizer()
    instrument()
    inputs = tokenizer("w10 w11 w12", return_tensors="pt", return_token_type_ids=False)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, tokenizer=tokenizer)
    a = telemetry.span().attributes
    messages = json.loads(a[sc.GEN_AI_INPUT_MESSAGES])
    assert messages[0]["parts"][0]["content"] == "w10 w11 w12"
    completion = json.loads(a[sc.GEN_AI_OUTPUT_MESSAGES])[0]
    assert completion["parts"][0]["content"] == tokenizer.decode(out[0, 3:], skip_special_tokens=True)
    assert completion["finish_reason"] in ("stop", "length")
