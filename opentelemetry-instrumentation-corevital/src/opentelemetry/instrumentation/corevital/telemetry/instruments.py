"""Metric instruments, created once per ``instrument()`` call with the spec's bucket boundaries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, Meter

from .. import semconv as sc
from ..generation import GenerationOutcome, GenerationRequest
from ..report import Intervention
from ..signals.assess import HealthReport


def _histogram(meter: Meter, name: str, unit: str, description: str, buckets: Iterable[float]) -> Histogram:
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        )
    except TypeError:  # opentelemetry-api older than 1.23 has no bucket advice
        return meter.create_histogram(name, unit=unit, description=description)


class Instruments:
    """Every metric CoreVital records. Attributes stay low cardinality (model, operation, error)."""

    def __init__(self, meter: Meter) -> None:
        self.operation_duration = _histogram(
            meter,
            sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION,
            "s",
            "GenAI operation duration",
            sc.BUCKETS_GEN_AI_CLIENT_OPERATION_DURATION,
        )
        self.token_usage = _histogram(
            meter,
            sc.METRIC_GEN_AI_CLIENT_TOKEN_USAGE,
            "{token}",
            "Number of input and output tokens used",
            sc.BUCKETS_GEN_AI_CLIENT_TOKEN_USAGE,
        )
        self.time_to_first_token = _histogram(
            meter,
            sc.METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
            "s",
            "Time to generate the first token (prefill), measured in process",
            sc.BUCKETS_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
        )
        self.time_per_output_token = _histogram(
            meter,
            sc.METRIC_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
            "s",
            "Time per output token after the first, measured in process",
            sc.BUCKETS_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
        )
        self.step_entropy = _histogram(
            meter,
            sc.METRIC_COREVITAL_STEP_ENTROPY,
            "bit",
            "Entropy of the raw next-token distribution at every decoding step",
            sc.BUCKETS_COREVITAL_STEP_ENTROPY,
        )
        self.risk_score = _histogram(
            meter,
            sc.METRIC_COREVITAL_RISK_SCORE,
            "1",
            "Risk score of each returned sequence",
            sc.BUCKETS_COREVITAL_RISK_SCORE,
        )
        self.overhead = _histogram(
            meter,
            sc.METRIC_COREVITAL_OVERHEAD_DURATION,
            "s",
            "Time CoreVital itself spent on one generate() call",
            sc.BUCKETS_COREVITAL_OVERHEAD_DURATION,
        )
        self.health_flags = meter.create_counter(
            sc.METRIC_COREVITAL_HEALTH_FLAGS, unit="{flag}", description="Health flags raised, by flag"
        )
        self.compound_signals = meter.create_counter(
            sc.METRIC_COREVITAL_COMPOUND_SIGNALS,
            unit="{signal}",
            description="Compound signals detected, by signal",
        )
        self.early_warnings = meter.create_counter(
            sc.METRIC_COREVITAL_EARLY_WARNINGS,
            unit="{warning}",
            description="Early-warning trend detectors that fired, by detector",
        )
        self.interventions = meter.create_counter(
            sc.METRIC_COREVITAL_INTERVENTIONS, unit="{intervention}",
            description="Sequences CoreVital stopped (stop_on), by signal",
        )  # fmt: skip
        self.internal_errors = meter.create_counter(
            sc.METRIC_COREVITAL_INTERNAL_ERRORS, unit="{error}",
            description="Failures inside CoreVital's own code, by exception type",
        )  # fmt: skip

    def record_call(
        self,
        request: GenerationRequest,
        outcome: GenerationOutcome | None,
        *,
        duration: float,
        time_to_first_token: float | None,
        error_type: str | None,
        context: Context | None,
    ) -> None:
        """Record the GenAI metrics of one call (with the span's context, for exemplars)."""
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_TEXT_COMPLETION,
            sc.GEN_AI_PROVIDER_NAME: sc.GEN_AI_PROVIDER_HUGGINGFACE,
            sc.GEN_AI_REQUEST_MODEL: request.model_name,
        }
        if error_type is not None:
            attributes[sc.ERROR_TYPE] = error_type
        self.operation_duration.record(duration, attributes, context=context)
        if error_type is not None or outcome is None:
            return
        if request.input_tokens is not None:
            self.token_usage.record(
                request.input_tokens,
                {**attributes, sc.GEN_AI_TOKEN_TYPE: sc.GEN_AI_TOKEN_TYPE_INPUT},
                context,
            )
        if outcome.output_lengths:
            self.token_usage.record(
                outcome.output_tokens,
                {**attributes, sc.GEN_AI_TOKEN_TYPE: sc.GEN_AI_TOKEN_TYPE_OUTPUT},
                context,
            )
        if time_to_first_token is not None:
            self.time_to_first_token.record(time_to_first_token, attributes, context=context)
            decode_tokens = outcome.longest_output - 1
            if decode_tokens > 0:
                self.time_per_output_token.record(
                    (duration - time_to_first_token) / decode_tokens, attributes, context=context
                )

    def record_health(
        self, request: GenerationRequest, health: HealthReport, context: Context | None
    ) -> None:
        """Once per returned sequence: its risk score and what it raised; and the interventions."""
        model = {sc.GEN_AI_REQUEST_MODEL: request.model_name}
        for sequence in health.sequences:
            self.risk_score.record(sequence.risk.score, model, context=context)
            for flag in sequence.flags.names:
                self.health_flags.add(1, {**model, sc.COREVITAL_FLAG_NAME: flag}, context=context)
            for signal in sequence.compound:
                self.compound_signals.add(
                    1, {**model, sc.COREVITAL_COMPOUND_SIGNAL_NAME: signal.name}, context=context
                )
            for name in sequence.early_warning.signals:
                self.early_warnings.add(
                    1, {**model, sc.COREVITAL_EARLY_WARNING_SIGNAL: name}, context=context
                )
        self.record_interventions(request, health.interventions, context)

    def record_interventions(
        self, request: GenerationRequest, interventions: Sequence[Intervention], context: Context | None
    ) -> None:
        """One per sequence CoreVital stopped, by signal."""
        for intervention in interventions:
            self.interventions.add(
                1,
                {
                    sc.GEN_AI_REQUEST_MODEL: request.model_name,
                    sc.COREVITAL_INTERVENTION_SIGNAL: intervention.signal,
                },
                context=context,
            )

    def record_internal_errors(
        self, request: GenerationRequest, error_types: Sequence[str], context: Context | None
    ) -> None:
        """One per failure CoreVital caught during the call, by exception class name."""
        for error_type in error_types:
            self.internal_errors.add(
                1,
                {sc.GEN_AI_REQUEST_MODEL: request.model_name, sc.COREVITAL_ERROR_TYPE: error_type},
                context=context,
            )

    def record_entropy(
        self, request: GenerationRequest, values: Iterable[float], context: Context | None
    ) -> None:
        """One histogram sample per decoding step of every returned sequence."""
        attributes = {sc.GEN_AI_REQUEST_MODEL: request.model_name}
        record = self.step_entropy.record
        for value in values:
            if value == value:  # skip NaN
                record(value, attributes, context=context)

    def record_overhead(
        self, request: GenerationRequest, level: str, seconds: float, context: Context | None
    ) -> None:
        """CoreVital's own cost of one call (hooks, criterion and read-out)."""
        attributes = {sc.GEN_AI_REQUEST_MODEL: request.model_name, sc.COREVITAL_CAPTURE_LEVEL: level}
        self.overhead.record(seconds, attributes, context=context)
