"""The evaluation's calibration metrics (eval/metrics.py) and Platt scaling (fitting.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eval.metrics import brier_score, expected_calibration_error

from opentelemetry.instrumentation.corevital.fitting import fit_platt


def test_ece_brier_and_platt() -> None:
    assert expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 1, 0, 0]) == pytest.approx(0.1)
    assert brier_score([1.0, 0.0], [1, 0]) == 0.0
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 2000)
    labels = (rng.uniform(0, 1, 2000) < 1 / (1 + np.exp(-(6 * scores - 3)))).astype(float)
    model = fit_platt(scores, labels)
    assert model.a == pytest.approx(6, abs=0.8) and model.b == pytest.approx(-3, abs=0.5)
    assert expected_calibration_error(model(scores), labels) < 0.05
    constant = fit_platt([0.1, 0.2], [1, 1])
    assert constant.a == 0.0 and constant(np.array([0.5]))[0] > 0.99
    with pytest.raises(ValueError):
        expected_calibration_error([], [])
