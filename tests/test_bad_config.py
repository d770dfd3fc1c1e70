"""Bad configuration never reaches the user's generation: one clear warning naming the file, the
field, the bad value and the fallback, and the output stays identical."""

from __future__ import annotations

import json
import logging

import pytest

import tiny_models
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.profiles import ModelProfile, clear_caches, load_profiles
from outputs import assert_identical

SHIPPED_LLAMA = ModelProfile.model_validate({"name": "llama", "l2_explosion_multiplier": 10.0})

# (file name, text, what the warning must name, the field, the value the profile keeps)
MODEL_PROFILES = [
    ("llama.yaml", "name: llama\nrepetition_ngram: 1\n", ["repetition_ngram", "1", "using 6"], "repetition_ngram", 6),  # noqa: E501
    ("llama.yaml", "name: llama\nhigh_entropy_threshold_bits: lots\n", ["high_entropy_threshold_bits", "'lots'"],  # noqa: E501
     "high_entropy_threshold_bits", 3.5),
    ("llama.yaml", "name: llama\nl2_explosion_multiplier: -2\n", ["l2_explosion_multiplier", "-2", "10.0"],
     "l2_explosion_multiplier", 10.0),
    ("llama.yaml", "name: llama\nrepetiton_ngram: 5\n", ["unknown key", "repetiton_ngram"], "repetition_ngram", 6),  # noqa: E501
    ("llama.yaml", "name: llama\nrepetition_ngram: [6\n", ["cannot be read"], "repetition_ngram", 6),
    ("llama.yaml", "- just\n- a list\n", ["must be a mapping"], "repetition_ngram", 6),
    ("llama.yaml", "name: llama\nrisk_model: {split_output_tokens: 4}\n", ["risk_model"], "repetition_ngram", 6),  # noqa: E501
    ("llama.yaml", "\x00\xff binary garbage", ["cannot be read"], "repetition_ngram", 6),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "named", "field", "kept"), MODEL_PROFILES)
def test_bad_model_profile(name, text, named, field, kept, tmp_path, instrument, telemetry, caplog) -> None:
    directory = tmp_path / "profiles"
    directory.mkdir()
    path = directory / name
    path.write_bytes(
        text.encode("utf-8", "surrogateescape") if "\x00" not in text else b"\x00\xff\xfe garbage"
    )
    clear_caches()
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with caplog.at_level(logging.WARNING):
        instrument(profiles_dir=str(directory))
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert_identical(plain, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0]
    for word in named:
        assert word in warnings[0], (word, warnings[0])
    profile = load_profiles(str(directory))["llama"]
    assert getattr(profile, field) == kept
    assert profile.l2_explosion_multiplier == SHIPPED_LLAMA.l2_explosion_multiplier  # the rest is shipped
    assert sc.COREVITAL_RISK_SCORE in telemetry.span().attributes


CALIBRATION_FILES = [
    ("corrupt", "{not json", "not valid JSON"),
    ("foreign", json.dumps({"spans": [1, 2, 3]}), "version"),
    ("wrong type", json.dumps({"version": 1, "model": "m", "runs": "many"}), "runs"),
    ("out of range", json.dumps({"version": 1, "model": "m", "runs": -3}), "runs"),
    ("unknown key", json.dumps({"version": 1, "model": "m", "runs": 3, "colour": "red"}), "colour"),
    ("bad distribution", json.dumps({"version": 1, "model": "m", "runs": 1, "metrics": {"entropy": {"count": 1}}}),  # noqa: E501
     "metrics.entropy"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "named"), CALIBRATION_FILES)
def test_bad_calibration_profile(case, text, named, tmp_path, instrument, telemetry, caplog) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(text)
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with caplog.at_level(logging.WARNING):
        instrument(calibration_profile=str(path))
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert_identical(plain, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and named in warnings[0], warnings
    a = telemetry.span().attributes
    assert sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE not in a and sc.COREVITAL_RISK_SCORE in a


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_INSTRUMENTATION_COREVITAL_CAPTURE", "everything"),
        ("OTEL_INSTRUMENTATION_COREVITAL_SERIES_MAX_POINTS", "0"),
        ("OTEL_INSTRUMENTATION_COREVITAL_STOP_ON", "repetition_loop;nan"),
        ("OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR", "/no/such/directory"),
        ("OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE", "/no/such/file.json"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "sometimes"),
        ("OTEL_INSTRUMENTATION_COREVITAL_EXPECTED_FAILURE_RATE", "1.5"),
        ("OTEL_INSTRUMENTATION_COREVITAL_EXPECTED_FAILURE_RATE", "often"),
    ],
)
def test_bad_environment_value(variable, value, monkeypatch, instrument, telemetry, caplog) -> None:
    monkeypatch.setenv(variable, value)
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with caplog.at_level(logging.WARNING):
        instrument()
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert_identical(plain, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and variable in warnings[0] and repr(value) in warnings[0], warnings
    assert "Using the default" in warnings[0]
    assert sc.COREVITAL_RISK_SCORE in telemetry.span().attributes


def test_shipped_profiles_load_without_a_warning(caplog) -> None:
    clear_caches()
    with caplog.at_level(logging.WARNING):
        profiles = load_profiles(None)
    assert caplog.records == []
    assert {"default", "llama", "gpt2", "qwen2", "mistral", "mixtral", "phi3"} <= set(profiles)
