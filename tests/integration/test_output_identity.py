"""Rule 1: the instrumented generate returns exactly what the plain one returns, in every mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from transformers import pipeline
from transformers.generation.streamers import BaseStreamer

import tiny_models
from opentelemetry.instrumentation.corevital import semconv as sc
from outputs import assert_identical
from tiny_tokenizer import tiny_tokenizer

LEVELS = ["logits", "hidden", "attention"]

#: The attention kernel and dtype a model runs with: its default kernel (``sdpa``) in float32 and
#: bfloat16, and ``eager``. CoreVital never changes the kernel, so every one must give identical
#: outputs at every level.
KERNELS: dict[str, tuple[str, torch.dtype]] = {
    "eager-float32": ("eager", torch.float32),
    "sdpa-float32": ("sdpa", torch.float32),
    "sdpa-bfloat16": ("sdpa", torch.bfloat16),
}


def build(factory: Callable[..., Any], kernel: str) -> Any:
    name, dtype = KERNELS[kernel]
    try:
        return factory(attn_implementation=name).to(dtype)
    except ValueError as exc:  # T5 has no sdpa kernel under transformers 4.5x
        pytest.skip(f"{factory.__name__} has no {name} kernel here ({str(exc)[:60]})")


DECODER_MODES: dict[str, dict[str, Any]] = {
    "greedy": {"max_new_tokens": 12, "do_sample": False},
    "sampling": {"max_new_tokens": 12, "do_sample": True, "temperature": 0.8, "top_k": 20, "top_p": 0.9},
    "num_return_sequences": {"max_new_tokens": 8, "do_sample": True, "num_return_sequences": 3},
    "beam_search": {"max_new_tokens": 8, "num_beams": 3, "num_return_sequences": 2, "do_sample": False},
    "dict_with_internals": {
        "max_new_tokens": 6, "do_sample": False, "return_dict_in_generate": True, "output_scores": True,
        "output_logits": True, "output_hidden_states": True, "output_attentions": True,
    },
    "dict_scores_only": {"max_new_tokens": 6, "do_sample": False, "return_dict_in_generate": True,
                         "output_scores": True},
    "eos_early": {"max_new_tokens": 30, "do_sample": True, "min_new_tokens": 1},
}  # fmt: skip


def assert_captured(telemetry: Any, level: str) -> None:
    """The call was really summarised at ``level``, without an internal error."""
    attributes = telemetry.span().attributes
    assert sc.COREVITAL_ERROR_TYPE not in attributes, attributes.get(sc.COREVITAL_ERROR_TYPE)
    assert attributes[sc.COREVITAL_CAPTURE_LEVEL] == level
    assert attributes[sc.COREVITAL_STEPS] > 0
    assert sc.COREVITAL_ENTROPY_SERIES in attributes


def run_both(
    model: Any, instrument: Callable[..., Any], level: str, call: Callable[[], Any], seed: int = 0
) -> tuple[Any, Any]:
    torch.manual_seed(seed)
    plain = call()
    instrument(capture=level)
    torch.manual_seed(seed)
    instrumented = call()
    return plain, instrumented


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("mode", sorted(DECODER_MODES))
@pytest.mark.parametrize("arch", sorted(tiny_models.DECODER_ONLY))
def test_decoder_only_identical(arch: str, mode: str, level: str, kernel: str, instrument, telemetry) -> None:
    model = build(tiny_models.DECODER_ONLY[arch], kernel)
    inputs = tiny_models.prompt(batch=2, padded=True)
    plain, instrumented = run_both(
        model, instrument, level, lambda: model.generate(**inputs, **DECODER_MODES[mode])
    )
    assert_identical(plain, instrumented)
    assert_captured(telemetry, level)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("arch", sorted(tiny_models.ALL))
def test_the_attention_kernel_is_never_switched(arch: str, level: str, instrument, telemetry) -> None:
    model = tiny_models.ALL[arch]()
    own = model.config._attn_implementation  # sdpa (T5 on transformers 4.5x: eager)
    seen: set[str] = set()
    model.register_forward_pre_hook(lambda module, args: seen.add(module.config._attn_implementation))
    inputs = tiny_models.prompt(batch=1)
    plain, instrumented = run_both(
        model, instrument, level, lambda: model.generate(**inputs, max_new_tokens=10, do_sample=False)
    )
    assert_identical(plain, instrumented)
    assert_captured(telemetry, level)
    assert seen == {own} and model.config._attn_implementation == own
    if level == "attention":  # read on the model's own kernel, every layer, no reason given
        attributes = telemetry.span().attributes
        assert sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON not in attributes
        assert len(attributes[sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN]) == model.config.num_hidden_layers


SEQ2SEQ_MODES: dict[str, dict[str, Any]] = {
    "greedy": {"max_new_tokens": 8, "do_sample": False},
    "beam_search": {"max_new_tokens": 8, "num_beams": 2, "do_sample": False},
    "sampling": {"max_new_tokens": 8, "do_sample": True, "num_return_sequences": 2},
    "dict_with_internals": {
        "max_new_tokens": 5, "do_sample": False, "return_dict_in_generate": True, "output_scores": True,
        "output_hidden_states": True, "output_attentions": True,
    },
}  # fmt: skip


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("mode", sorted(SEQ2SEQ_MODES))
@pytest.mark.parametrize("arch", sorted(tiny_models.SEQ2SEQ))
def test_seq2seq_identical(arch: str, mode: str, level: str, kernel: str, instrument, telemetry) -> None:
    model = build(tiny_models.SEQ2SEQ[arch], kernel)
    inputs = tiny_models.prompt(batch=2, padded=True)
    plain, instrumented = run_both(
        model, instrument, level, lambda: model.generate(**inputs, **SEQ2SEQ_MODES[mode])
    )
    assert_identical(plain, instrumented)
    assert_captured(telemetry, level)


class CollectingStreamer(BaseStreamer):
    """A streamer that keeps every chunk of token ids it is given."""

    def __init__(self) -> None:
        self.chunks: list[list[int]] = []
        self.ended = 0

    def put(self, value: torch.Tensor) -> None:
        self.chunks.append(value.flatten().tolist())

    def end(self) -> None:
        self.ended += 1


def test_streamer_sees_the_same_tokens(instrument, telemetry) -> None:
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain_streamer, instrumented_streamer = CollectingStreamer(), CollectingStreamer()
    plain = model.generate(**inputs, max_new_tokens=10, do_sample=False, streamer=plain_streamer)
    instrument()
    instrumented = model.generate(
        **inputs, max_new_tokens=10, do_sample=False, streamer=instrumented_streamer
    )
    assert_identical(plain, instrumented)
    assert plain_streamer.chunks == instrumented_streamer.chunks
    assert instrumented_streamer.ended == 1
    assert_captured(telemetry, "hidden")


def test_pipeline_identical_and_one_span(instrument, telemetry) -> None:
    model = tiny_models.llama()
    generator = pipeline("text-generation", model=model, tokenizer=tiny_tokenizer())
    text = "w10 w11 w12 w13"
    plain = generator(text, max_new_tokens=8, do_sample=False)
    instrument()
    instrumented = generator(text, max_new_tokens=8, do_sample=False)
    assert plain == instrumented
    assert_captured(telemetry, "hidden")
