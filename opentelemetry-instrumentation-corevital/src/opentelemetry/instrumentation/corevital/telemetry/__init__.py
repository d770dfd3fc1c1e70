"""The only room that touches the OpenTelemetry API: span attributes, events and metrics."""

from .attributes import (
    content_attributes,
    report_attributes,
    request_attributes,
    response_attributes,
    sequence_event_attributes,
)
from .health import add_events, emit_evaluation, health_attributes, intervention_attributes, worst_index
from .instruments import Instruments

__all__ = [
    "Instruments",
    "add_events",
    "content_attributes",
    "emit_evaluation",
    "health_attributes",
    "intervention_attributes",
    "report_attributes",
    "request_attributes",
    "response_attributes",
    "sequence_event_attributes",
    "worst_index",
]
