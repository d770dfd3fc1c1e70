"""Health reports in code: the read-out of the calls an application just made, without parsing spans.

Two ways, both thread- and context-safe, and free when unused:

- :func:`health_reports`, a context manager that collects the :class:`HealthReport` of every
  ``generate()`` call made inside it, in this thread or asyncio task::

      from opentelemetry.instrumentation.corevital import health_reports

      with health_reports() as reports:
          output = model.generate(**inputs, max_new_tokens=64)
      if reports.last is not None and reports.last.risk_band == "high":
          output = model.generate(**inputs, max_new_tokens=64, do_sample=True)  # retry

- a callback for every call in the process: ``CoreVitalInstrumentor().instrument(on_report=fn)``.

A report is delivered when the call returns, after the span is written. Reports are produced even
for calls whose span is not sampled, as long as someone collects them. Every consumer (each
collecting block, nested ones included, and the callback) gets a report of its own: changing one
changes no other (the others get deep copies, made only when there is more than one consumer).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
from collections.abc import Callable, Iterator

from .signals.assess import HealthReport, SequenceHealth

__all__ = ["HealthReport", "HealthReports", "SequenceHealth", "health_reports"]

logger = logging.getLogger(__name__)

_COLLECTORS: contextvars.ContextVar[tuple[HealthReports, ...]] = contextvars.ContextVar(
    "corevital_health_reports", default=()
)


class HealthReports(list[HealthReport]):
    """The health reports collected by one :func:`health_reports` block, oldest first."""

    @property
    def last(self) -> HealthReport | None:
        """The most recent report, ``None`` before the first call returned."""
        return self[-1] if self else None


@contextlib.contextmanager
def health_reports() -> Iterator[HealthReports]:
    """Collect the health report of every ``generate()`` call made in this block, in this context.

    Blocks nest (an outer block sees the calls of the inner ones too). A thread started inside the
    block does not report into it: each thread collects its own.
    """
    collector = HealthReports()
    token = _COLLECTORS.set((*_COLLECTORS.get(), collector))
    try:
        yield collector
    finally:
        _COLLECTORS.reset(token)


class ReportDelivery:
    """Hands each call's report to the active collectors and to the ``on_report`` callback."""

    def __init__(self, callback: Callable[[HealthReport], None] | None = None) -> None:
        self._callback = callback

    def wanted(self) -> bool:
        """Whether anyone in this context wants the report of the next call."""
        return self._callback is not None or bool(_COLLECTORS.get())

    @staticmethod
    def collectors() -> tuple[HealthReports, ...]:
        """The collectors of this context (kept by a call that ends on another thread)."""
        return _COLLECTORS.get()

    def deliver(
        self,
        report: HealthReport,
        on_error: Callable[[str, BaseException], None],
        collectors: tuple[HealthReports, ...] | None = None,
    ) -> None:
        """Give ``report`` to every collector (of this context, unless ``collectors`` says which:
        those of the context the call started in) and to the callback, each its own copy (the last
        one gets ``report`` itself); a raising callback is reported as a CoreVital error, never
        raised into the call."""
        targets = list(_COLLECTORS.get() if collectors is None else collectors)
        callback = self._callback
        consumers = len(targets) + (callback is not None)
        copies = [copy.deepcopy(report) for _ in range(consumers - 1)] + [report]
        for collector, own in zip(targets, copies, strict=False):
            collector.append(own)
        if callback is not None:
            try:
                callback(copies[-1])
            except Exception as exc:
                on_error("calling the on_report callback", exc)
