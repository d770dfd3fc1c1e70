"""Settings: keyword over environment over default; bad values warn once and fall back."""

from __future__ import annotations

import logging

import pytest

from opentelemetry.instrumentation.corevital.config import (
    ENV_CAPTURE,
    ENV_CAPTURE_MESSAGE_CONTENT,
    ENV_EXPECTED_FAILURE_RATE,
    ENV_PROMPT_HASH_KEY,
    ENV_SERIES_MAX_POINTS,
    ENV_STOP_ON,
    CaptureLevel,
    ContentCapture,
    Settings,
)

ON_SPAN = ContentCapture.SPAN_ONLY
NONE = ContentCapture.NO_CONTENT


def test_defaults() -> None:
    settings = Settings.resolve({}, {})
    assert settings == Settings(capture=CaptureLevel.HIDDEN, series_max_points=256, capture_content=NONE)


def test_environment_over_default() -> None:
    env = {ENV_CAPTURE: " Attention ", ENV_SERIES_MAX_POINTS: "64", ENV_CAPTURE_MESSAGE_CONTENT: "TRUE"}
    expected = Settings(capture=CaptureLevel.ATTENTION, series_max_points=64, capture_content=ON_SPAN)
    assert Settings.resolve({}, env) == expected


def test_keyword_over_environment() -> None:
    env = {ENV_CAPTURE: "attention", ENV_SERIES_MAX_POINTS: "64", ENV_CAPTURE_MESSAGE_CONTENT: "true"}
    settings = Settings.resolve({"capture": "logits", "series_max_points": 10, "capture_content": False}, env)
    assert settings == Settings(capture=CaptureLevel.LOGITS, series_max_points=10, capture_content=NONE)


@pytest.mark.parametrize(
    ("env", "variable", "expected"),
    [
        ({ENV_CAPTURE: "everything"}, ENV_CAPTURE, Settings()),
        ({ENV_SERIES_MAX_POINTS: "many"}, ENV_SERIES_MAX_POINTS, Settings()),
        ({ENV_SERIES_MAX_POINTS: "1"}, ENV_SERIES_MAX_POINTS, Settings()),
        ({ENV_CAPTURE_MESSAGE_CONTENT: "maybe"}, ENV_CAPTURE_MESSAGE_CONTENT, Settings()),
        ({ENV_STOP_ON: "repetition_loop,bananas"}, ENV_STOP_ON, Settings()),
        ({ENV_PROMPT_HASH_KEY: "short"}, ENV_PROMPT_HASH_KEY, Settings()),
        ({ENV_EXPECTED_FAILURE_RATE: "1"}, ENV_EXPECTED_FAILURE_RATE, Settings()),
        ({ENV_EXPECTED_FAILURE_RATE: "0"}, ENV_EXPECTED_FAILURE_RATE, Settings()),
        ({ENV_EXPECTED_FAILURE_RATE: "5%"}, ENV_EXPECTED_FAILURE_RATE, Settings()),
        ({ENV_EXPECTED_FAILURE_RATE: "nan"}, ENV_EXPECTED_FAILURE_RATE, Settings()),
    ],
)
def test_invalid_environment_warns_and_uses_default(env, variable, expected, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert Settings.resolve({}, env) == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert variable in warnings[0] and "allowed" in warnings[0]


def test_invalid_keyword_falls_back_to_environment(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        settings = Settings.resolve({"capture": "bogus", "series_max_points": 2.5}, {ENV_CAPTURE: "logits"})
    assert settings.capture is CaptureLevel.LOGITS
    assert settings.series_max_points == 256
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "capture=" in messages and "logits, hidden, attention" in messages


@pytest.mark.parametrize(
    ("value", "on_span", "in_event"),
    [
        ("true", True, False), ("TRUE", True, False), ("1", True, False), ("SPAN_ONLY", True, False),
        ("span_and_event", True, True), ("EVENT_ONLY", False, True), ("NO_CONTENT", False, False),
        ("false", False, False), ("0", False, False), ("", False, False),
    ],
)  # fmt: skip
def test_content_values_of_the_upstream_genai_instrumentations(value, on_span, in_event) -> None:
    content = Settings.resolve({}, {ENV_CAPTURE_MESSAGE_CONTENT: value}).capture_content
    assert (content.on_span, content.in_event) == (on_span, in_event)


def test_content_keyword_accepts_a_bool() -> None:
    assert Settings.resolve({"capture_content": True}, {}).capture_content is ON_SPAN


def test_stop_on_aliases_and_prompt_hash_key() -> None:
    settings = Settings.resolve({"stop_on": "repetition, NaN"}, {ENV_PROMPT_HASH_KEY: "a deployment secret"})
    assert settings.stop_on == {"repetition_loop", "nan_detected"}
    assert settings.prompt_hash_key is not None
    assert settings.prompt_hash_key.get_secret_value() == b"a deployment secret"
    assert "deployment" not in repr(settings)  # the secret is never printed


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ("x" * 15, False),
        ("x" * 16, True),
        ("é" * 9, False),  # 18 bytes in UTF-8, but 9 characters: too short, as documented
        ("é" * 16, True),
        (b"\x00" * 15, False),
        (b"\x00" * 16, True),
    ],
)
def test_prompt_hash_key_length_counts_characters_as_documented(key, accepted) -> None:
    settings = Settings.resolve({"prompt_hash_key": key}, {})
    assert (settings.prompt_hash_key is not None) is accepted
    if accepted:
        expected = key.encode() if isinstance(key, str) else key
        assert settings.prompt_hash_key.get_secret_value() == expected


def test_a_bad_secret_is_not_logged(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        Settings.resolve({}, {ENV_PROMPT_HASH_KEY: "tiny"})
    assert "tiny" not in caplog.text


def test_settings_are_frozen() -> None:
    with pytest.raises(Exception):  # noqa: B017  (pydantic's frozen-instance error)
        Settings().capture = CaptureLevel.LOGITS  # type: ignore[misc]


def test_unknown_instrument_keyword_warns_once(instrument, telemetry, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        instrument(captur="attention")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "captur" in warnings[0]


def test_expected_failure_rate_from_environment_and_keyword() -> None:
    assert Settings().expected_failure_rate == 0.2  # the documented default (docs/configuration.md)
    assert Settings.resolve({}, {ENV_EXPECTED_FAILURE_RATE: " 0.05 "}).expected_failure_rate == 0.05
    env = {ENV_EXPECTED_FAILURE_RATE: "0.05"}
    assert Settings.resolve({"expected_failure_rate": 0.5}, env).expected_failure_rate == 0.5


def test_expected_failure_rate_rejects_a_bool(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        settings = Settings.resolve({"expected_failure_rate": True}, {})
    assert settings.expected_failure_rate == 0.2
    assert len(caplog.records) == 1 and "expected_failure_rate" in caplog.records[0].getMessage()
