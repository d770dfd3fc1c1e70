"""Settings: keyword over environment over default; bad values warn once and fall back."""

from __future__ import annotations

import logging

import pytest

from opentelemetry.instrumentation.corevital.config import (
    ENV_CAPTURE,
    ENV_CAPTURE_MESSAGE_CONTENT,
    ENV_SERIES_MAX_POINTS,
    CaptureLevel,
    Settings,
)


def test_defaults() -> None:
    settings = Settings.resolve({}, {})
    assert settings == Settings(capture=CaptureLevel.HIDDEN, series_max_points=256, capture_content=False)


def test_environment_over_default() -> None:
    env = {ENV_CAPTURE: " Attention ", ENV_SERIES_MAX_POINTS: "64", ENV_CAPTURE_MESSAGE_CONTENT: "TRUE"}
    assert Settings.resolve({}, env) == Settings(CaptureLevel.ATTENTION, 64, True)


def test_keyword_over_environment() -> None:
    env = {ENV_CAPTURE: "attention", ENV_SERIES_MAX_POINTS: "64", ENV_CAPTURE_MESSAGE_CONTENT: "true"}
    settings = Settings.resolve({"capture": "logits", "series_max_points": 10, "capture_content": False}, env)
    assert settings == Settings(CaptureLevel.LOGITS, 10, False)


@pytest.mark.parametrize(
    ("env", "variable", "expected"),
    [
        ({ENV_CAPTURE: "everything"}, ENV_CAPTURE, Settings()),
        ({ENV_SERIES_MAX_POINTS: "many"}, ENV_SERIES_MAX_POINTS, Settings()),
        ({ENV_SERIES_MAX_POINTS: "1"}, ENV_SERIES_MAX_POINTS, Settings()),
        ({ENV_CAPTURE_MESSAGE_CONTENT: "maybe"}, ENV_CAPTURE_MESSAGE_CONTENT, Settings()),
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


@pytest.mark.parametrize("value", ["span_only", "SPAN_AND_EVENT", "1", "yes"])
def test_content_truthy_values(value: str) -> None:
    assert Settings.resolve({}, {ENV_CAPTURE_MESSAGE_CONTENT: value}).capture_content


@pytest.mark.parametrize("value", ["no_content", "event_only", "0", "false", ""])
def test_content_falsy_values(value: str) -> None:
    assert not Settings.resolve({}, {ENV_CAPTURE_MESSAGE_CONTENT: value}).capture_content


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().capture = CaptureLevel.LOGITS  # type: ignore[misc]


def test_instrument_with_invalid_env_does_not_crash(instrument, telemetry, monkeypatch, caplog) -> None:
    import tiny_models
    from opentelemetry.instrumentation.corevital import semconv as sc

    monkeypatch.setenv(ENV_CAPTURE, "loud")
    with caplog.at_level(logging.WARNING):
        instrumentor = instrument()
    assert instrumentor.settings.capture is CaptureLevel.HIDDEN
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)
    assert telemetry.span().attributes[sc.COREVITAL_CAPTURE_LEVEL] == "hidden"
