"""The only room that touches the OpenTelemetry API: span attributes, events and metrics."""

from .attributes import (
    content_attributes,
    report_attributes,
    request_attributes,
    response_attributes,
    sequence_event_attributes,
)
from .instruments import Instruments

__all__ = [
    "Instruments",
    "content_attributes",
    "report_attributes",
    "request_attributes",
    "response_attributes",
    "sequence_event_attributes",
]
