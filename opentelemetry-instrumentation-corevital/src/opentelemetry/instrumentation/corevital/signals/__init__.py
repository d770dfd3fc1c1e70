"""Pure python/numpy functions over per-step series: no torch and no OpenTelemetry here."""

from .series import SeriesStats, downsample, layer_aggregate, pooled, series_stats

__all__ = ["SeriesStats", "downsample", "layer_aggregate", "pooled", "series_stats"]
