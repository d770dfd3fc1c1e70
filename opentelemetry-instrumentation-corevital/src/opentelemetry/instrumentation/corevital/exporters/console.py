"""Console exporters: CoreVital's read-out and metrics as text for terminals and logs.

Registered as ``corevital_console`` under the ``opentelemetry_traces_exporter`` and
``opentelemetry_metrics_exporter`` entry points, so ``opentelemetry-instrument`` finds them by name
and they compose with any other exporter::

    opentelemetry-instrument --traces_exporter corevital_console,otlp \\
        --metrics_exporter corevital_console --logs_exporter none python app.py

Both write to standard output (or the stream they are given), flush after every block, and never
raise into the SDK: a span that cannot be formatted costs one line that says so.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .metric_view import format_metrics
from .span_view import format_generation, is_generation_span, printable

logger = logging.getLogger(__name__)


class CoreVitalConsoleSpanExporter(SpanExporter):
    """Prints one compact block per CoreVital generation span; every other span is ignored.

    Args:
        out: the stream to write to; default ``sys.stdout`` (looked up at each export, so a
            redirected stdout is honoured).
        width: the width the narrative and long lines are wrapped to.
    """

    def __init__(self, out: TextIO | None = None, width: int = 100) -> None:
        self._out = out
        self._width = width

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = SpanExportResult.SUCCESS
        for span in spans:
            try:
                if not is_generation_span(span):
                    continue
                text = format_generation(span, self._width)
            except Exception as exc:  # a malformed span must not stop the SDK's export
                logger.debug("could not format span %r", getattr(span, "name", None), exc_info=True)
                name = printable(str(getattr(span, "name", "?")))
                text = f"== CoreVital: {name} == (read-out not shown: {exc!r})\n"
            if not _write(self._out, text + "\n"):
                result = SpanExportResult.FAILURE
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return _flush(self._out)

    def shutdown(self) -> None:
        _flush(self._out)


class CoreVitalConsoleMetricExporter(MetricExporter):
    """Prints a small table of CoreVital's and the GenAI metrics when the process ends.

    The SDK hands every export (each ``OTEL_METRIC_EXPORT_INTERVAL``, 60 s by default, and a last
    one at exit) to this exporter; it keeps the latest and prints it on ``shutdown``, so a terminal
    gets one table after the read-out blocks instead of one a minute between them. With
    ``every_export=True`` it prints at each export instead (a table identical to the last one
    printed is skipped).

    Before printing, it flushes the global tracer provider, so the table comes after the read-out
    blocks of the generations it counts (at exit the SDK shuts metrics down before traces).

    Args:
        out: the stream to write to; default ``sys.stdout``.
        every_export: print at every export rather than once at shutdown.
        flush_spans_first: set ``False`` to leave the tracer provider alone.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        every_export: bool = False,
        flush_spans_first: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._out = out
        self._every_export = every_export
        self._flush_spans_first = flush_spans_first
        self._latest = ""
        self._printed = ""

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            text = format_metrics(metrics_data)
        except Exception:  # never into the SDK
            logger.debug("could not format the metrics", exc_info=True)
            return MetricExportResult.FAILURE
        if text:
            self._latest = text
        if self._every_export and not self._print():
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return _flush(self._out)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._print()

    def _print(self) -> bool:
        """Print the latest table unless it was printed already."""
        if not self._latest or self._latest == self._printed:
            return True
        if self._flush_spans_first:
            _flush_spans()
        self._printed = self._latest
        return _write(self._out, "\n" + self._latest)


def _write(out: TextIO | None, text: str) -> bool:
    stream = out or sys.stdout
    try:
        stream.write(text)
        stream.flush()
        return True
    except Exception:  # a closed or broken stream: the SDK must go on
        logger.debug("could not write the CoreVital console view", exc_info=True)
        return False


def _flush(out: TextIO | None) -> bool:
    try:
        (out or sys.stdout).flush()
        return True
    except Exception:
        return False


def _flush_spans() -> None:
    provider = trace.get_tracer_provider()
    try:
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()
    except Exception:
        logger.debug("could not flush the tracer provider", exc_info=True)
