"""The only room that touches the OpenTelemetry API: span attributes, events, metrics and log events.

:class:`Writer` is the one writer; the other modules build plain attribute dicts and create the
metric instruments.
"""

from .instruments import Instruments
from .writer import CallRecord, Writer

__all__ = ["CallRecord", "Instruments", "Writer"]
