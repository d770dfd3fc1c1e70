"""Pure python/numpy functions over per-step series: no torch and no OpenTelemetry here."""

from ._util import as_array, nanmean
from .series import SeriesStats, downsample, layer_aggregate, pooled, series_stats

__all__ = ["SeriesStats", "as_array", "downsample", "layer_aggregate", "nanmean", "pooled", "series_stats"]
