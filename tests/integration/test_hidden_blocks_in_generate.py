"""The hidden-state statistics computed in blocks (no stop_on) and step by step (stop_on) agree
through a real generate() call."""

from __future__ import annotations

import numpy as np

import tiny_models
from opentelemetry.instrumentation.corevital.summaries import HIDDEN_LAYER_FIELDS


def test_deferred_and_live_hidden_capture_agree(instrument) -> None:
    """Without stop_on the hidden statistics are computed in blocks at the end; with stop_on step by
    step. Both read-outs are the same."""
    from opentelemetry.instrumentation.corevital import health_reports

    model = tiny_models.llama()
    captured = {}
    for stop_on in ("", "nan"):
        instrumentor = instrument(capture="hidden", stop_on=stop_on)
        with health_reports() as reports:
            model.generate(**tiny_models.prompt(batch=2), max_new_tokens=40, min_new_tokens=40)
        instrumentor.uninstrument()
        (sequence, _) = reports.last.capture.sequences
        captured[stop_on] = sequence
    deferred, live = captured[""], captured["nan"]
    assert deferred.hidden_layers.keys() == live.hidden_layers.keys() == set(HIDDEN_LAYER_FIELDS)
    for name in HIDDEN_LAYER_FIELDS:
        assert deferred.hidden_layers[name].shape == (40, 4)
        np.testing.assert_allclose(deferred.hidden_layers[name], live.hidden_layers[name], rtol=1e-5)
    for name, values in live.series.items():
        np.testing.assert_allclose(deferred.series[name], values, rtol=1e-5, atol=1e-6, equal_nan=True)
