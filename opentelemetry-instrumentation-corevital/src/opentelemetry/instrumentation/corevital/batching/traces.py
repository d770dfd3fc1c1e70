"""The continuous-batching requests in flight, per manager.

Each request admitted by ``add_request`` gets one :class:`RequestTrace` (its span and capture
session, opened in the context of the code that submitted it), kept in the :class:`TraceTable` of
its manager until the request finishes, fails or is cancelled. A manager and its batch processor
share one ``OutputRouter`` object, which is what the table is keyed by.

Threads: requests are added from the submitter's thread; everything else (steps, completion,
the end of a cancelled request) happens on the manager's generation thread. The table's lock
guards the dictionary only.
"""

from __future__ import annotations

import collections
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from ..lifecycle import Call
from .step import BatchStep


@dataclass
class RequestTrace:
    """One request from admission to completion."""

    request_id: str
    call: Call
    cancelled: bool = False


@dataclass
class TraceTable:
    """The traced requests of one manager, and its forwards whose tokens are not yet known."""

    traces: dict[str, RequestTrace] = field(default_factory=dict)
    pending: collections.deque[BatchStep] = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, trace: RequestTrace) -> None:
        with self.lock:
            self.traces[trace.request_id] = trace

    def get(self, request_id: Any) -> RequestTrace | None:
        with self.lock:
            return self.traces.get(str(request_id))

    def pop(self, request_id: Any) -> RequestTrace | None:
        with self.lock:
            return self.traces.pop(str(request_id), None)

    def cancelled(self) -> list[RequestTrace]:
        with self.lock:
            return [trace for trace in self.traces.values() if trace.cancelled]

    def __len__(self) -> int:
        return len(self.traces)


_TABLES: weakref.WeakKeyDictionary[Any, TraceTable] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def table_for(router: Any, create: bool = False) -> TraceTable | None:
    """The table of the manager owning ``router`` (its ``OutputRouter``); created on demand."""
    if router is None:
        return None
    with _TABLES_LOCK:
        table = _TABLES.get(router)
        if table is None and create:
            table = _TABLES[router] = TraceTable()
        return table
