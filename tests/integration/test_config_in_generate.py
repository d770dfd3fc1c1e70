"""Bad settings through instrument() on a tiny model: the call runs with the fallback."""

from __future__ import annotations

import logging

from opentelemetry.instrumentation.corevital.config import ENV_CAPTURE, CaptureLevel


def test_instrument_with_invalid_env_does_not_crash(instrument, telemetry, monkeypatch, caplog) -> None:
    import tiny_models
    from opentelemetry.instrumentation.corevital import semconv as sc

    monkeypatch.setenv(ENV_CAPTURE, "loud")
    with caplog.at_level(logging.WARNING):
        instrumentor = instrument()
    assert instrumentor.settings.capture is CaptureLevel.HIDDEN
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)
    assert telemetry.span().attributes[sc.COREVITAL_CAPTURE_LEVEL] == "hidden"
