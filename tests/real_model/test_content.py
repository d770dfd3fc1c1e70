"""Message content (opt-in): chat roles kept for pipelines and generate(tokenizer=...), content on
the span or in an event as the GenAI setting says, and — by default — no content anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from transformers import pipeline

from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.messages import parse_chat, text_message

SYSTEM = "You answer in one short sentence."
QUESTION = "What is the capital of Italy?"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]


# -- chat templates, without a model ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", ["system", "user"]),  # noqa: E501
        (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ["system", "user"],
        ),
        ("<bos><start_of_turn>user\nQ<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n", ["user", "assistant"]),  # noqa: E501
        ("<|system|>\nS<|end|>\n<|user|>\nQ<|end|>\n<|assistant|>\n", ["system", "user"]),
        ("<s>[INST] Q [/INST] A</s>[INST] Q2 [/INST]", ["user", "assistant", "user"]),
    ],
)  # fmt: skip
def test_known_chat_templates_keep_their_roles(text: str, roles: list[str]) -> None:
    messages = parse_chat(text)
    assert messages is not None and [m["role"] for m in messages] == roles
    assert messages[0]["parts"][0]["content"] in ("S", "Q")


def test_plain_text_is_not_a_chat() -> None:
    assert parse_chat("Once upon a time") is None
    assert text_message("user", "hi") == {"role": "user", "parts": [{"type": "text", "content": "hi"}]}


# -- the real SmolLM2 (ChatML) ------------------------------------------------------------------------
def _messages(attributes: Any, key: str) -> list[dict[str, Any]]:
    return list(json.loads(attributes[key]))


@pytest.mark.real_model
def test_pipeline_chat_keeps_roles(smollm2, instrument, telemetry, monkeypatch) -> None:
    model, tokenizer = smollm2
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    instrument()
    answer = generator(MESSAGES, max_new_tokens=12, do_sample=False)[0]["generated_text"][-1]["content"]
    a = telemetry.span().attributes
    assert _messages(a, sc.GEN_AI_INPUT_MESSAGES) == [
        text_message("system", SYSTEM),
        text_message("user", QUESTION),
    ]
    (output,) = _messages(a, sc.GEN_AI_OUTPUT_MESSAGES)
    assert output["role"] == "assistant" and output["parts"][0]["content"].strip() == answer.strip()
    assert output["finish_reason"] in ("stop", "length")


@pytest.mark.real_model
def test_generate_with_tokenizer_splits_the_chat_template(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    instrument(capture_content=True)
    model.generate(**inputs, max_new_tokens=8, do_sample=False, tokenizer=tokenizer)
    messages = _messages(telemetry.span().attributes, sc.GEN_AI_INPUT_MESSAGES)
    # SmolLM2's template adds its default system prompt: it is recorded as a system message.
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["parts"][0]["content"] == QUESTION


@pytest.mark.real_model
def test_event_only_puts_content_in_the_log_event_not_the_span(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    logs = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    inputs = tokenizer(QUESTION, return_tensors="pt")
    instrument(capture_content="EVENT_ONLY", logger_provider=provider)
    model.generate(**inputs, max_new_tokens=6, do_sample=False, tokenizer=tokenizer)
    span = telemetry.span()
    assert sc.GEN_AI_INPUT_MESSAGES not in span.attributes
    (details,) = [
        r.log_record
        for r in logs.get_finished_logs()
        if r.log_record.event_name == sc.EVENT_GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS
    ]
    assert details.span_id == span.context.span_id
    assert _messages(details.attributes, sc.GEN_AI_INPUT_MESSAGES) == [text_message("user", QUESTION)]


# -- the default: nothing leaves the process ------------------------------------------------------------
@pytest.mark.real_model
def test_no_content_anywhere_by_default(smollm2, instrument, telemetry, monkeypatch) -> None:
    """Spans, span events, metrics and log records are searched for the prompt, the completion and
    every generated token string of 4 characters or more."""
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    model, tokenizer = smollm2
    logs = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    instrument(capture="attention", logger_provider=provider)
    prompt = "Describe a lighthouse keeper who collects seashells."
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    generator([{"role": "user", "content": prompt}], max_new_tokens=24, do_sample=False)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=24, do_sample=False, tokenizer=tokenizer)
    generated = out[0, inputs["input_ids"].shape[1] :].tolist()
    completion = tokenizer.decode(generated, skip_special_tokens=True).strip()
    words = (tokenizer.decode([i], skip_special_tokens=True).strip() for i in generated)
    needles = {prompt, completion, *(word for word in words if len(word) >= 4)}
    exported: list[str] = []
    for span in telemetry.spans():
        exported.append(json.dumps(dict(span.attributes), default=str))
        exported += [json.dumps([e.name, dict(e.attributes)], default=str) for e in span.events]
    for metric in telemetry.metrics().values():
        exported += [json.dumps(dict(p.attributes), default=str) for p in metric.data.data_points]
    for log in logs.get_finished_logs():
        exported.append(json.dumps([str(log.log_record.body), dict(log.log_record.attributes)], default=str))
    haystack = "\n".join(exported)
    assert len(telemetry.spans()) == 2 and len(needles) > 5 and len(completion) > 40
    found = sorted(needle for needle in needles if needle in haystack)
    assert found == [], f"content found in the telemetry: {found}"
