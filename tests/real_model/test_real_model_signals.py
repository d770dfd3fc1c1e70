"""Health signals on the real SmolLM2-135M: a greedy loop is caught, stop_on ends it, and a healthy
answer raises nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.signals.repetition import first_repeated_ngram
from outputs import assert_identical

pytestmark = pytest.mark.real_model

LOOPS = Path(__file__).resolve().parents[2] / "eval" / "data" / "loops-dev.jsonl"
LOOPING_PROMPT = "Describe a cat who loves the sea in detail."  # loops-dev.jsonl: loops under greedy


def chat(tokenizer, text: str):  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def test_looping_prompt_is_in_the_dev_set() -> None:
    prompts = [json.loads(line)["prompt"] for line in LOOPS.read_text().splitlines()]
    assert LOOPING_PROMPT in prompts


def test_repetition_loop_fires_near_the_first_repeated_8gram(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    inputs = chat(tokenizer, LOOPING_PROMPT)
    instrument()
    out = model.generate(**inputs, max_new_tokens=96, do_sample=False)
    generated = out[0, inputs["input_ids"].shape[1] :].tolist()
    first_repeat = first_repeated_ngram(generated, 8)
    assert first_repeat is not None, "the prompt no longer loops: pick another from loops-dev.jsonl"
    span = telemetry.span()
    a = span.attributes
    assert a[sc.COREVITAL_FLAG_REPETITION_LOOP] is True
    assert a[sc.COREVITAL_RISK_BAND] == "high"
    fired = [
        e.attributes[sc.COREVITAL_STEP]
        for e in span.events
        if e.name == sc.EVENT_COREVITAL_HEALTH_FLAG
        and e.attributes[sc.COREVITAL_FLAG_NAME] == sc.FLAG_REPETITION_LOOP
    ]
    assert len(fired) == 1
    assert 0 <= fired[0] - first_repeat <= 4
    assert "repetition penalty" in a[sc.COREVITAL_NARRATIVE]


def test_stop_on_repetition_loop_shortens_the_output(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    inputs = chat(tokenizer, LOOPING_PROMPT)
    plain = model.generate(**inputs, max_new_tokens=96, do_sample=False)
    instrument(stop_on="repetition_loop")
    stopped = model.generate(**inputs, max_new_tokens=96, do_sample=False)
    span = telemetry.span()
    a = span.attributes
    step = a[sc.COREVITAL_INTERVENTION_STEP]
    prompt_length = inputs["input_ids"].shape[1]
    assert a[sc.COREVITAL_INTERVENTION_SIGNAL] == sc.FLAG_REPETITION_LOOP
    assert stopped.shape[1] == prompt_length + step + 1 < plain.shape[1]
    assert_identical(plain[:, : stopped.shape[1]], stopped)
    assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS] == (sc.FINISH_REASON_COREVITAL_STOPPED,)
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == step + 1
    interventions = [e for e in span.events if e.name == sc.EVENT_COREVITAL_INTERVENTION]
    assert len(interventions) == 1 and interventions[0].attributes[sc.COREVITAL_STEP] == step
    counter = telemetry.metrics()[sc.METRIC_COREVITAL_INTERVENTIONS].data.data_points[0]
    assert counter.value == 1 and counter.attributes[sc.COREVITAL_INTERVENTION_SIGNAL] == "repetition_loop"


def test_stop_on_merges_with_the_users_own_criteria(smollm2, instrument, telemetry) -> None:
    from transformers import MaxLengthCriteria, StoppingCriteriaList

    model, tokenizer = smollm2
    inputs = chat(tokenizer, LOOPING_PROMPT)
    prompt_length = inputs["input_ids"].shape[1]
    user_criteria = StoppingCriteriaList([MaxLengthCriteria(max_length=prompt_length + 10)])
    plain = model.generate(**inputs, max_new_tokens=96, do_sample=False, stopping_criteria=user_criteria)
    instrument(stop_on="repetition_loop")
    out = model.generate(**inputs, max_new_tokens=96, do_sample=False, stopping_criteria=user_criteria)
    assert_identical(plain, out)  # the user's criterion stops first; ours changes nothing
    assert len(user_criteria) == 1  # the user's list is not modified
    assert sc.COREVITAL_INTERVENTION_STEP not in telemetry.span().attributes


def test_healthy_answer_raises_no_flag(smollm2, instrument, telemetry) -> None:
    model, tokenizer = smollm2
    instrument()
    model.generate(**chat(tokenizer, "What is the capital of France?"), max_new_tokens=40, do_sample=False)
    span = telemetry.span()
    a = span.attributes
    assert a[sc.COREVITAL_FLAGS] == ()
    assert not [e for e in span.events if e.name == sc.EVENT_COREVITAL_HEALTH_FLAG]
    # No flag; the risk score is a calibrated probability, not a flag: SmolLM2 gets half of all
    # capitals wrong, so a sentence-long answer to a capital question is not "low" risk a priori.
    assert 0 < a[sc.COREVITAL_RISK_SCORE] < 0.7
    assert len(a[sc.COREVITAL_FINGERPRINT_VECTOR]) == 25
    assert len(a[sc.COREVITAL_PROMPT_HASH]) == 64
