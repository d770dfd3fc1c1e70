"""signals.series: statistics and downsampling over hand-made series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opentelemetry.instrumentation.corevital.signals import (
    SeriesStats,
    downsample,
    layer_aggregate,
    pooled,
    series_stats,
)


def test_stats_ignore_nan_and_inf() -> None:
    assert series_stats([1.0, math.nan, 3.0, math.inf]) == SeriesStats(2.0, 1.0, 3.0)


@pytest.mark.parametrize("values", [[], [math.nan], [math.nan, math.inf]])
def test_stats_of_nothing(values) -> None:
    assert series_stats(values) == SeriesStats(None, None, None)


def test_stats_one_step() -> None:
    assert series_stats([0.5]) == SeriesStats(0.5, 0.5, 0.5)


def test_downsample_keeps_short_series() -> None:
    values, stride = downsample([1.0, 2.0], 4)
    assert values.tolist() == [1.0, 2.0] and stride == 1


def test_downsample_bounds_length_and_averages() -> None:
    values, stride = downsample(np.arange(1000, dtype=float), 256)
    assert len(values) <= 256 and stride == 4
    assert values[0] == pytest.approx(1.5)
    assert values[-1] == pytest.approx(997.5)


def test_downsample_nan_aware() -> None:
    values, _ = downsample([math.nan, 2.0, math.nan, math.nan], 2)
    assert values[0] == 2.0 and math.isnan(values[1])


def test_downsample_rejects_zero() -> None:
    with pytest.raises(ValueError):
        downsample([1.0], 0)


def test_pooled_rows_of_different_lengths() -> None:
    assert pooled([np.array([1.0, 2.0]), np.array([]), np.array([3.0])]).tolist() == [1.0, 2.0, 3.0]
    assert pooled([]).size == 0


def test_layer_aggregate() -> None:
    per_step = np.array([[1.0, math.nan], [3.0, math.nan]])
    assert layer_aggregate(per_step, "mean")[0] == 2.0
    assert math.isnan(layer_aggregate(per_step, "max")[1])
    assert layer_aggregate(per_step, "sum").tolist() == [4.0, 0.0]
    assert np.isnan(layer_aggregate(np.zeros((0, 3)), "mean")).all()
    with pytest.raises(ValueError):
        layer_aggregate(np.zeros(3), "mean")
