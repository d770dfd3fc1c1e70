"""The risk score's prior shift: the fitted model records the failure rate it was fitted on, and the
score is moved from that rate to the one the user expects (docs/signals.md, "Risk score")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opentelemetry.instrumentation.corevital.fitting import fit_risk_model
from opentelemetry.instrumentation.corevital.profiles import ModelProfile
from opentelemetry.instrumentation.corevital.signals import flags, risk
from opentelemetry.instrumentation.corevital.signals.risk import RiskModel, prior_shift
from risk_rows import labelled


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_prior_shift_is_the_logit_difference() -> None:
    assert prior_shift(0.3, 0.3) == 0.0
    assert prior_shift(0.55, 0.1) == pytest.approx(logit(0.1) - logit(0.55))
    for unknown in ((None, 0.2), (0.5, None), (0.0, 0.2), (0.5, 1.0)):
        assert prior_shift(*unknown) == 0.0


def test_fitting_records_the_training_failure_rate() -> None:
    x, y = labelled()
    model = fit_risk_model(x, y)
    assert model.short.training_failure_rate == pytest.approx(y.mean())
    data = model.to_mapping()
    assert data["short"]["training_failure_rate"] == pytest.approx(y.mean(), abs=1e-6)
    assert RiskModel.from_mapping(data) == RiskModel.from_mapping(data)
    assert RiskModel.from_mapping(data).short.training_failure_rate == pytest.approx(y.mean(), abs=1e-6)
    profile = ModelProfile.model_validate({"risk_model": data})  # the profile schema accepts it
    assert profile.risk is not None and profile.risk.short.training_failure_rate is not None


def test_predict_shifts_the_logit_and_keeps_the_order() -> None:
    x, y = labelled()
    model = fit_risk_model(x, y)
    p = model.short.training_failure_rate
    assert p is not None
    raw = np.asarray(model.predict(x))
    assert np.allclose(np.asarray(model.predict(x, p)), raw)  # at the training rate: unchanged
    shifted = np.asarray(model.predict(x, 0.05))
    assert np.allclose(np.log(shifted / (1 - shifted)), np.log(raw / (1 - raw)) + logit(0.05) - logit(p))
    assert (np.argsort(shifted) == np.argsort(raw)).all()  # ranking (AUROC) is untouched
    # the average prediction follows the stated rate
    assert abs(shifted.mean() - 0.05) < abs(raw.mean() - 0.05)


def test_a_model_without_a_recorded_rate_is_not_shifted() -> None:
    x, y = labelled()
    data = fit_risk_model(x, y).to_mapping()
    for part in ("short", "long"):
        data[part].pop("training_failure_rate", None)
    model = RiskModel.from_mapping(data)
    assert np.allclose(np.asarray(model.predict(x, 0.01)), np.asarray(model.predict(x)))


def test_the_band_is_read_from_the_shifted_score() -> None:
    x, y = labelled()
    model = fit_risk_model(x, y)
    row = x[np.argmax(np.asarray(model.predict(x)))]
    at_training = risk.model_risk(model, row, flags.HealthFlags(), expected_failure_rate=None)
    rare = risk.model_risk(model, row, flags.HealthFlags(), expected_failure_rate=0.001)
    assert at_training.band == risk.HIGH
    assert rare.score < at_training.score and rare.band == risk.risk_band(rare.score) != risk.HIGH
