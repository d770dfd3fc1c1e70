"""The attention read-out through transformers' attention interface: what it reads (the model's own
layers, each at its column), that its statistics are those of the weights the eager kernel computes,
and how it says why when it cannot read."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import transformers

import tiny_models
from opentelemetry.instrumentation.corevital import health_reports
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.capture import attention as attention_module
from opentelemetry.instrumentation.corevital.summaries import ATTENTION_LAYER_FIELDS, summarize_attention_rows
from outputs import assert_identical

TRANSFORMERS_5 = not transformers.__version__.startswith("4.")


def reference(model: Any, inputs: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """``[steps, batch, layers, fields]``: the statistics of the weights the eager kernel returns
    (``output_attentions``), over the keys each row attends (left padding left out)."""
    out = model.generate(
        **inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, return_dict_in_generate=True,
        output_attentions=True,
    )  # fmt: skip
    per_step = out.decoder_attentions if model.config.is_encoder_decoder else out.attentions
    mask = inputs["attention_mask"]
    stats = []
    for t, layers in enumerate(per_step):
        rows = torch.stack([layer[:, :, -1] for layer in layers])  # [layers, batch, heads, keys]
        keys = rows.shape[-1]
        if model.config.is_encoder_decoder:
            attended = torch.ones(rows.shape[1], keys, dtype=torch.bool)
        else:
            attended = torch.cat([mask, torch.ones(mask.shape[0], t, dtype=mask.dtype)], dim=1)[:, -keys:] > 0
        stats.append(summarize_attention_rows(rows, attended=attended.expand(len(layers), -1, -1)))
    return torch.stack(stats)


@pytest.mark.parametrize("arch", sorted(tiny_models.ALL))
def test_the_statistics_are_those_of_the_eager_weights(arch: str, instrument) -> None:
    model = tiny_models.ALL[arch](attn_implementation="eager")
    inputs = tiny_models.prompt(batch=2, padded=True)
    expected = reference(model, inputs, steps=6)
    instrument(capture="attention")
    with health_reports() as reports:
        model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert reports.last is not None
    for row, sequence in enumerate(reports.last.capture.sequences):
        for field, name in enumerate(ATTENTION_LAYER_FIELDS):
            got = sequence.attention_layers[name]
            np.testing.assert_allclose(
                got, expected[: got.shape[0], row, :, field].numpy(), atol=2e-4, rtol=1e-4
            )


def test_a_static_cache_reads_as_a_dynamic_one(instrument) -> None:
    """The empty slots of a static cache are not keys: every statistic equals the dynamic cache's."""
    model = tiny_models.llama()
    inputs = tiny_models.prompt(batch=2, padded=True)
    captured = []
    for cache in (None, "static"):
        instrument(capture="attention")
        with health_reports() as reports:
            model.generate(
                **inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False, cache_implementation=cache
            )
        assert reports.last is not None
        captured.append(reports.last.capture.sequences)
    for dynamic, static in zip(*captured, strict=True):
        for name in ATTENTION_LAYER_FIELDS:
            np.testing.assert_allclose(
                static.attention_layers[name], dynamic.attention_layers[name], atol=1e-4
            )


@pytest.mark.skipif(not TRANSFORMERS_5, reason="the tiny vision-language model is built with transformers 5")
def test_a_vision_tower_in_the_forward_is_not_read_as_layers(instrument, telemetry) -> None:
    """A vision-language model runs its vision encoder inside the prefill forward: only the language
    model's layers are read, each at its own column, and the output is unchanged."""
    torch.manual_seed(0)
    mllama = transformers.models.mllama
    vision = mllama.MllamaVisionConfig(
        hidden_size=32, attention_heads=4, num_hidden_layers=2, num_global_layers=1, intermediate_size=64,
        image_size=16, patch_size=8, max_num_tiles=1, vision_output_dim=64, intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1]],
    )  # fmt: skip
    text = mllama.MllamaTextConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, cross_attention_layers=[1], pad_token_id=0, eos_token_id=2, bos_token_id=1,
    )  # fmt: skip
    config = transformers.MllamaConfig(vision_config=vision, text_config=text, image_token_index=95)
    model = transformers.MllamaForConditionalGeneration(config).eval()
    ids = torch.cat([torch.full((1, 1), 95), torch.randint(3, 90, (1, 5))], dim=1)
    inputs = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(1, 2, 1, 3, 16, 16),
        "aspect_ratio_ids": torch.ones(1, 2, dtype=torch.long),
        "aspect_ratio_mask": torch.ones(1, 2, 1, dtype=torch.long),
        "cross_attention_mask": torch.ones(1, ids.shape[1], 2, 1, dtype=torch.long),
    }  # fmt: skip
    plain = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    instrument(capture="attention")
    assert_identical(plain, model.generate(**inputs, max_new_tokens=4, do_sample=False))
    a = telemetry.span().attributes
    assert sc.COREVITAL_ERROR_TYPE not in a and sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON not in a
    assert len(a[sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN]) == text.num_hidden_layers


def test_a_mask_that_cannot_be_read_says_why_and_is_no_error(instrument, telemetry) -> None:
    """flex_attention hands its kernel a BlockMask: no attention read-out, the reason on the span, no
    CoreVital error, the rest of the read-out and the output as ever."""
    model = tiny_models.llama(attn_implementation="flex_attention")
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    instrument(capture="attention")
    assert_identical(plain, model.generate(**inputs, max_new_tokens=4, do_sample=False))
    a = telemetry.span().attributes
    assert sc.COREVITAL_ERROR_TYPE not in a
    assert a[sc.COREVITAL_CAPTURE_LEVEL] == "hidden"
    assert "BlockMask" in a[sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON]


def test_a_failure_in_the_middle_of_a_call_is_counted_once(instrument, telemetry, monkeypatch) -> None:
    """Reading attention fails at the fourth step: one internal error for the call (not one per
    step), the later steps without attention and a reason on the span, the output unchanged."""
    real = attention_module.last_query_weights
    calls = {"n": 0}

    def failing_later(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 3 * 4:  # 4 layers: the fourth forward
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    monkeypatch.setattr(attention_module, "last_query_weights", failing_later)
    instrument(capture="attention")
    assert_identical(plain, model.generate(**inputs, max_new_tokens=10, min_new_tokens=10, do_sample=False))
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_ERROR_TYPE] == "RuntimeError"
    assert "reading attention failed" in a[sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON]
    points = [p for p in telemetry.metrics()[sc.METRIC_COREVITAL_INTERNAL_ERRORS].data.data_points]
    assert sum(p.value for p in points) == 1
    entropy = a[sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN]
    assert len(entropy) == 4 and all(np.isfinite(entropy))  # the steps before the failure
