"""Held-out scoring (eval/heldout.py): the evaluation's numbers are only as honest as the
bookkeeping that keeps each item out of its model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval import heldout

from opentelemetry.instrumentation.corevital.fitting import fit_risk_model
from opentelemetry.instrumentation.corevital.signals.risk import RISK_FEATURES


def data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(float)
    x = rng.normal(size=(n, len(RISK_FEATURES)))
    x[:, 0] += y
    x[:, RISK_FEATURES.index("output_tokens_log")] = np.log1p(10)
    groups = np.array(["a", "b", "c"])[np.arange(n) % 3]
    return x, y, groups


def test_each_group_is_scored_by_a_model_fitted_without_it() -> None:
    x, y, groups = data()
    result = heldout.held_out(x, y, groups, score_groups=["a", "b"])
    model = fit_risk_model(x[groups != "a"], y[groups != "a"])
    assert np.allclose(result.raw[groups == "a"], np.asarray(model.predict(x[groups == "a"])))
    assert np.isnan(result.raw[groups == "c"]).all()  # not held out, not scored
    assert np.allclose(result.rate[groups == "a"], y[groups != "a"].mean())


def test_train_mask_keeps_rows_out_of_every_model() -> None:
    x, y, groups = data()
    never = groups == "c"
    result = heldout.held_out(x, y, groups, score_groups=["a"], train_mask=~never)
    model = fit_risk_model(x[groups == "b"], y[groups == "b"])
    assert np.allclose(result.raw[groups == "a"], np.asarray(model.predict(x[groups == "a"])))


def test_reading_the_scores_at_another_failure_rate() -> None:
    x, y, groups = data()
    result = heldout.held_out(x, y, groups)
    assert np.allclose(result.at(None), result.raw)
    assert np.allclose(result.at(result.rate), result.raw)  # at the training rate: unchanged
    low = result.at(0.05)
    assert (low < result.raw).all() and low.mean() == pytest.approx(0.05, abs=0.05)
    model = fit_risk_model(x[groups != "a"], y[groups != "a"])
    assert np.allclose(result.at(0.05)[groups == "a"], np.asarray(model.predict(x[groups == "a"], 0.05)))
