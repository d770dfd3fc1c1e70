"""Reading generate() arguments and results: token counts and finish reasons from tensors."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import GenerationConfig

import tiny_models
from opentelemetry.instrumentation.corevital.generation import inspect_result, resolve_request


def request_for(**kwargs):  # type: ignore[no-untyped-def]
    model = tiny_models.llama()
    inputs = tiny_models.prompt(batch=2, length=3)
    return resolve_request(model, (), {**inputs, **kwargs})


def test_effective_parameters_kwargs_over_config() -> None:
    config = GenerationConfig(max_new_tokens=9, do_sample=True, temperature=0.5, top_k=7)
    request = request_for(generation_config=config, temperature=0.9)
    assert request.max_new_tokens == 9
    assert request.temperature == 0.9 and request.top_k == 7
    assert request.input_tokens == 6 and request.prompt_length == 3
    assert request.eos_token_ids == (tiny_models.EOS,)


def test_max_length_gives_max_new_tokens() -> None:
    assert request_for(max_length=10).max_new_tokens == 7


def test_finish_reasons_and_lengths() -> None:
    request = request_for(max_new_tokens=4)
    eos = tiny_models.EOS
    sequences = torch.tensor([[5, 5, 5, 9, eos, eos, eos], [5, 5, 5, 9, 9, 9, 9]])
    outcome = inspect_result(sequences, request)
    assert outcome.output_lengths == [2, 4]
    assert outcome.finish_reasons == ["stop", "length"]
    assert outcome.output_tokens == 6


def test_batch_stopped_early_without_eos_is_stop() -> None:
    request = request_for(max_new_tokens=10)
    outcome = inspect_result(torch.tensor([[5, 5, 5, 9, 9]]), request)
    assert outcome.finish_reasons == ["stop"]


def test_padding_after_a_stop_string_is_not_counted() -> None:
    model = tiny_models.llama()
    model.generation_config.pad_token_id = 0
    request = resolve_request(
        model, (torch.tensor([[5, 5, 5]]),), {"max_new_tokens": 5, "stop_strings": ["x"]}
    )
    outcome = inspect_result(torch.tensor([[5, 5, 5, 9, 9, 0, 0, 0]]), request)
    assert outcome.output_lengths == [2] and outcome.finish_reasons == ["stop"]


def test_seq2seq_prompt_is_the_decoder_start() -> None:
    model = tiny_models.t5()
    request = resolve_request(model, (), tiny_models.prompt(length=5))
    assert request.is_encoder_decoder and request.prompt_length == 1 and request.input_tokens == 5


def test_odd_arguments_do_not_crash() -> None:
    model = tiny_models.llama()
    request = resolve_request(model, ("not a tensor",), {"max_new_tokens": "many", "temperature": object()})
    assert request.input_tokens is None and request.max_new_tokens == 20
    assert inspect_result(object(), request).output_lengths == []


def test_assisted_decoding_is_marked_unsupported() -> None:
    assert request_for(assistant_model=tiny_models.llama()).unsupported_reason


@pytest.mark.parametrize("mode", ["assistant_model", "prompt_lookup_num_tokens"])
def test_assisted_decoding_is_said_once_at_info_and_on_the_span(mode, instrument, telemetry, caplog) -> None:
    from opentelemetry.instrumentation.corevital import generation
    from opentelemetry.instrumentation.corevital import semconv as sc
    from outputs import assert_identical

    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    extra = {"assistant_model": tiny_models.llama()} if mode == "assistant_model" else {mode: 2}
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False, **extra)
    generation._NOTED_MODES.clear()  # said once per process: forget what earlier tests said
    with caplog.at_level(logging.INFO):
        instrument()
        outputs = [model.generate(**inputs, max_new_tokens=5, do_sample=False, **extra) for _ in range(2)]
    for out in outputs:
        assert_identical(plain, out)
    # (transformers 4.5x adds one INFO line of its own at instrument(): no continuous batching there)
    said = [r for r in caplog.records if "CoreVital" in r.getMessage() and "batching" not in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO, [(r.levelname, r.getMessage()) for r in said]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "CoreVital" in r.getMessage()]
    assert "assisted and prompt-lookup decoding are not supported" in said[0].getMessage()
    assert "several candidate tokens" in said[0].getMessage()
    for span in telemetry.spans():
        reason = span.attributes[sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON]
        assert reason.startswith("logits: assisted and prompt-lookup decoding are not supported"), reason
        assert sc.COREVITAL_ERROR_TYPE not in span.attributes
        assert (
            span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == plain.shape[-1] - inputs["input_ids"].shape[-1]
        )


def test_model_name_hub_id_kept_local_path_reduced() -> None:
    from opentelemetry.instrumentation.corevital.generation import model_name

    model = tiny_models.llama()
    model.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model_name(model) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    model.name_or_path = "/opt/models/SmolLM2-135M-Instruct/"
    assert model_name(model) == "SmolLM2-135M-Instruct"
    model.name_or_path = ""
    assert model_name(model) == "LlamaForCausalLM"


CONFIG_CASES = [
    ({}, None, {}),
    ({"max_new_tokens": 7}, None, {}),
    ({}, {"max_new_tokens": 5, "do_sample": True, "temperature": 0.7}, {}),
    ({"top_k": 3}, {"max_new_tokens": 5, "do_sample": True, "top_k": 9}, {}),
    ({}, {"num_beams": 3, "num_return_sequences": 2}, {"max_new_tokens": 4}),
    ({}, {"temperature": 1.0}, {"temperature": 0.5, "do_sample": True, "top_p": 0.8}),
    ({}, None, {"max_length": 12, "num_beams": 2}),
]


@pytest.mark.parametrize(("kwargs", "user", "model_defaults"), CONFIG_CASES)
def test_settings_resolve_as_transformers_resolves_them(kwargs, user, model_defaults) -> None:
    """The cheap resolution agrees with transformers' own ``_prepare_generation_config``."""
    from transformers import GenerationConfig

    from opentelemetry.instrumentation.corevital.generation import config_setting

    model = tiny_models.llama()
    for key, value in model_defaults.items():
        setattr(model.generation_config, key, value)
    config = GenerationConfig(**user) if user is not None else None
    expected, _ = model._prepare_generation_config(config, **kwargs)
    call = {**kwargs, "generation_config": config}
    for name in ("max_new_tokens", "max_length", "do_sample", "temperature", "top_k", "top_p", "num_beams",
                 "num_return_sequences", "eos_token_id", "pad_token_id"):  # fmt: skip
        assert config_setting(model, call, name) == getattr(expected, name), name
