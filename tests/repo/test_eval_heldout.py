"""Held-out scoring (eval/heldout.py) and early-warning lead times (eval/lead_times.py): the
evaluation's numbers are only as honest as the bookkeeping that keeps each item out of its model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eval import heldout, lead_times

from opentelemetry.instrumentation.corevital.fitting import fit_risk_model
from opentelemetry.instrumentation.corevital.signals.early_warning import MARGIN_COLLAPSED
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


def test_lead_time_is_counted_from_the_first_repeated_8gram() -> None:
    steps = 60
    tokens = list(range(30)) + [1, 2, 3, 4, 5] * 6  # the loop is visible at step 30 + 8 - 1 ... repeat
    margin = np.full(steps, 0.8)
    margin[10:] = 0.01  # margin_collapsed holds from step 14 (five margins below 0.1)
    loop = lead_times.Generation(np.full(steps, 1.0), margin, np.full(steps, 0.5), tokens, failed=True)
    calm = lead_times.Generation(
        np.full(steps, 1.0), np.full(steps, 0.8), np.full(steps, 0.5), list(range(steps)), failed=False
    )
    records = lead_times.measure([loop, calm], threshold_bits=4.0, loops=True)
    record = records[MARGIN_COLLAPSED]
    first = lead_times.first_repeated_ngram(tokens, 8)
    assert first is not None and record.leads == [first - 14]
    assert record.catch_rate == 1.0 and record.false_alarm_rate == 0.0
    assert record.early_share == 1.0 and record.benefit(needs_lead=True)
    # a detector that fires on everything is no use, however early
    noisy = lead_times.DetectorRecord(
        positives=10, negatives=10, fired_positive=10, fired_negative=9, leads=[5] * 10
    )
    assert not noisy.benefit(needs_lead=True)
