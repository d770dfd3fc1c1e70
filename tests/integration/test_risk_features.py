"""Answer-aware risk features: the surprisal of the first generated token that does not repeat the
prompt (docs/signals.md, "Risk score"), computed from what the capture already holds."""

from __future__ import annotations

import math

import numpy as np

import tiny_models
from opentelemetry.instrumentation.corevital import health_reports
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.signals.risk import (
    RISK_FEATURES,
    first_new_token_surprisal,
    risk_features,
)
from outputs import assert_identical


def test_first_new_token_surprisal_skips_the_words_copied_from_the_prompt() -> None:
    # "The capital of France is" are prompt words; "Paris" is the first new token
    assert first_new_token_surprisal([0.1, 0.2, 0.3, 4.5, 0.1], [7, 8, 9, 42, 2], [7, 8, 9, 10]) == 4.5
    assert first_new_token_surprisal([0.1, 5.0], [42, 7], []) == 0.1  # no prompt: the first token
    assert math.isnan(first_new_token_surprisal([0.1, 0.2], [7, 8], [7, 8, 9]))  # nothing new
    assert math.isnan(first_new_token_surprisal([], [], [1]))
    assert math.isnan(first_new_token_surprisal([math.nan], [42], [1]))  # a NaN step stays undefined
    assert math.isnan(first_new_token_surprisal([0.3], [7, 42], [7]))  # the series ends first


def test_the_feature_is_part_of_the_risk_features() -> None:
    series = {"surprisal": np.array([0.1, 3.0]), "entropy": np.array([1.0, 2.0])}
    features = risk_features(series, 2, "stop", [7, 42], [7])
    assert features[RISK_FEATURES.index("first_new_token_surprisal")] == 3.0
    assert len(features) == len(RISK_FEATURES)


def test_the_capture_carries_the_prompt_ids_and_the_span_does_not(instrument, telemetry) -> None:
    model = tiny_models.llama()
    inputs = tiny_models.prompt(batch=2, padded=True)
    plain = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    instrument()
    with health_reports() as reports:
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert_identical(plain, out)
    assert reports.last is not None
    sequences = reports.last.capture.sequences
    for row, sequence in enumerate(sequences):  # unpadded ids of each row
        mask = inputs["attention_mask"][row].bool()
        assert sequence.prompt_tokens == inputs["input_ids"][row][mask].tolist()
    span = telemetry.span()
    prompt = inputs["input_ids"][0].tolist()
    for key, value in span.attributes.items():  # no token ids on the span without content capture
        assert not (isinstance(value, tuple) and list(value[: len(prompt)]) == prompt), key
    assert sc.COREVITAL_RISK_SCORE in span.attributes
