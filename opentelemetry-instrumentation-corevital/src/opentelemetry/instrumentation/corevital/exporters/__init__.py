"""Human-readable views of CoreVital's telemetry (they need ``opentelemetry-sdk``).

``corevital_console`` is a traces exporter and a metrics exporter for ``opentelemetry-instrument``:

    opentelemetry-instrument --traces_exporter corevital_console --metrics_exporter corevital_console \\
        --logs_exporter none python app.py

prints one block per ``generate()`` call and, at exit, a table of the metrics::

    == CoreVital: text_completion SmolLM2-135M-Instruct == trace 5b8efff798038103d269b633813fc60c
    model      SmolLM2-135M-Instruct (huggingface)
    tokens     40 in, 96 out   4.21 s   finish length
    risk       0.99 high   factors repeated_text, state_revisited, repetition_loop
    flags      repetition_loop at step 27; 14 high-entropy steps
    warnings   surprisal_volatile at step 18 (failure risk 0.90)
    layers     28 (l2_norm_outlier)
    narrative  Risk is high (0.99), mainly from repeated_text. ...

In code: ``BatchSpanProcessor(CoreVitalConsoleSpanExporter())`` on a ``TracerProvider``;
``PeriodicExportingMetricReader(CoreVitalConsoleMetricExporter())`` on a ``MeterProvider``.
"""

from __future__ import annotations

from .console import CoreVitalConsoleMetricExporter, CoreVitalConsoleSpanExporter
from .metric_view import format_metrics
from .span_view import format_generation, is_generation_span

__all__ = [
    "CoreVitalConsoleMetricExporter",
    "CoreVitalConsoleSpanExporter",
    "format_generation",
    "format_metrics",
    "is_generation_span",
]
