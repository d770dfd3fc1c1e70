"""The ``corevital_console`` exporters: one readable block per generation span, a metrics table,
and never an exception into the SDK."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tiny_models
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.exporters import (
    CoreVitalConsoleMetricExporter,
    CoreVitalConsoleSpanExporter,
    format_generation,
    format_metrics,
)
from opentelemetry.instrumentation.corevital.exporters.span_view import SCOPE_NAME
from opentelemetry.instrumentation.corevital.signals import blame
from opentelemetry.instrumentation.corevital.signals.narrative import format_risk

NARRATIVE = (
    "Risk is high (0.99), mainly from repeated_text. Entropy peaked at 7.96 bits at step 21. Health "
    "flags: repetition_loop. Blamed layers: 28 (nan_or_inf); 2, 3 (l2_norm_out_of_range). Consider a "
    "repetition penalty."
)
READ_OUT: dict[str, Any] = {
    sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_TEXT_COMPLETION,
    sc.GEN_AI_PROVIDER_NAME: sc.GEN_AI_PROVIDER_HUGGINGFACE,
    sc.GEN_AI_REQUEST_MODEL: "SmolLM2-135M-Instruct",
    sc.GEN_AI_USAGE_INPUT_TOKENS: 40,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 96,
    sc.GEN_AI_RESPONSE_FINISH_REASONS: [sc.FINISH_REASON_LENGTH],
    sc.COREVITAL_RISK_SCORE: 0.990311,
    sc.COREVITAL_RISK_BAND: sc.RISK_BAND_HIGH,
    sc.COREVITAL_RISK_FACTORS: ["repeated_text", "state_revisited"],
    sc.COREVITAL_FLAGS: [sc.FLAG_REPETITION_LOOP],
    sc.COREVITAL_HIGH_ENTROPY_STEPS: 14,
    sc.COREVITAL_EARLY_WARNING_FAILURE_RISK: 0.9,
    sc.COREVITAL_LAYER_BLAME_LAYERS: [28, 2, 3],
    sc.COREVITAL_LAYER_BLAME_DETAILS: json.dumps(
        [{"layer": 28, "reasons": [blame.NAN_OR_INF], "severity": 1.0}]
        + [{"layer": layer, "reasons": [blame.L2_OUT_OF_RANGE], "severity": 0.5} for layer in (2, 3)]
    ),
    sc.COREVITAL_NARRATIVE: NARRATIVE,
}


def make_span(
    attributes: dict[str, Any],
    events: list[tuple[str, dict[str, Any]]] = (),
    scope: str = SCOPE_NAME,  # type: ignore[assignment]
    name: str = "text_completion SmolLM2-135M-Instruct",
) -> ReadableSpan:
    """A finished span built by the real SDK, 2.5 s long."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer(scope).start_span(name, start_time=1_000_000_000)
    span.set_attributes(attributes)
    for name, event_attributes in events:
        span.add_event(name, event_attributes)
    span.end(end_time=3_500_000_000)
    (finished,) = exporter.get_finished_spans()
    return finished


def flag_event(name: str, step: int, sequence: int = 0) -> tuple[str, dict[str, Any]]:
    attributes = {
        sc.COREVITAL_FLAG_NAME: name,
        sc.COREVITAL_STEP: step,
        sc.COREVITAL_SEQUENCE_INDEX: sequence,
    }
    return sc.EVENT_COREVITAL_HEALTH_FLAG, attributes


def test_block_shows_the_read_out_a_person_needs() -> None:
    warning = (
        sc.EVENT_COREVITAL_EARLY_WARNING,
        {sc.COREVITAL_EARLY_WARNING_SIGNAL: "surprisal_volatile", sc.COREVITAL_STEP: 18},
    )
    fired = [warning, flag_event(sc.FLAG_HIGH_ENTROPY, 5), flag_event(sc.FLAG_REPETITION_LOOP, 27)]
    text = format_generation(make_span(READ_OUT, fired))
    lines = text.splitlines()
    assert lines[0].startswith("== CoreVital: text_completion SmolLM2-135M-Instruct == trace ")
    assert "model      SmolLM2-135M-Instruct (huggingface)" in lines
    assert "tokens     40 in, 96 out   2.50 s   finish length" in lines
    assert "risk       0.99 high   factors repeated_text, state_revisited" in lines
    assert "flags      high_entropy at step 5; repetition_loop at step 27" in lines
    assert "warnings   surprisal_volatile at step 18 (failure risk 0.90)" in lines
    # the same layers for the same reasons as the narrative says
    assert "layers     28 (nan_or_inf); 2, 3 (l2_norm_out_of_range)" in lines
    assert "Blamed layers: 28 (nan_or_inf); 2, 3 (l2_norm_out_of_range)." in NARRATIVE
    assert not any(line.startswith("stopped") for line in lines)
    narrative = " ".join(
        line[11:] for line in lines[lines.index(next(x for x in lines if x.startswith("narr"))) :]
    )
    assert narrative == NARRATIVE
    assert all(len(line) <= 100 for line in lines)


def test_a_small_risk_never_reads_zero_beside_a_flag() -> None:
    attributes = {**READ_OUT, sc.COREVITAL_RISK_SCORE: 0.000412, sc.COREVITAL_RISK_BAND: sc.RISK_BAND_LOW}
    lines = format_generation(make_span(attributes, [flag_event(sc.FLAG_REPETITION_LOOP, 27)])).splitlines()
    assert "risk       <0.001 low   factors repeated_text, state_revisited" in lines
    attributes[sc.COREVITAL_RISK_SCORE] = 0.0042
    assert "risk       0.004 low" in format_generation(make_span(attributes))


def test_block_shows_an_intervention_and_the_sequence_of_a_batch() -> None:
    reasons = [sc.FINISH_REASON_COREVITAL_STOPPED, sc.FINISH_REASON_STOP]
    attributes = {**READ_OUT, sc.COREVITAL_SEQUENCE_COUNT: 2, sc.COREVITAL_SERIES_SEQUENCE_INDEX: 1,
                  sc.GEN_AI_RESPONSE_FINISH_REASONS: reasons}  # fmt: skip
    stop = {sc.COREVITAL_INTERVENTION_SIGNAL: sc.FLAG_REPETITION_LOOP, sc.COREVITAL_STEP: 30,
            sc.COREVITAL_SEQUENCE_INDEX: 1}  # fmt: skip
    events = [flag_event(sc.FLAG_REPETITION_LOOP, 27, sequence=1), (sc.EVENT_COREVITAL_INTERVENTION, stop)]
    text = " ".join(format_generation(make_span(attributes, events)).split())  # wrapped lines joined
    assert "finish corevital.stopped, stop 2 sequences, read-out of sequence 1" in text
    assert "flags repetition_loop at step 27 of sequence 1" in text
    assert "stopped repetition_loop at step 30 (sequence 1)" in text


def test_missing_or_malformed_attributes_never_raise() -> None:
    bare = format_generation(make_span({}))
    assert bare.splitlines()[1:] == ["tokens     2.50 s", "risk       no CoreVital read-out on this span"]
    odd = {**READ_OUT, sc.COREVITAL_LAYER_BLAME_DETAILS: "not json", sc.COREVITAL_RISK_SCORE: "high?",
           sc.COREVITAL_RISK_FACTORS: "one", sc.GEN_AI_USAGE_INPUT_TOKENS: None}  # fmt: skip
    odd.pop(sc.COREVITAL_NARRATIVE)
    text = format_generation(
        make_span({k: v for k, v in odd.items() if v is not None}, [(sc.EVENT_COREVITAL_HEALTH_FLAG, {})])
    )
    assert "flags      ? at step ?; repetition_loop\n" in text  # a count of steps is not a flag
    assert "layers     28, 2, 3\n" in text and "risk       high?" in text and "factors one" in text
    assert "? at step ?" in text and "narrative" not in text and "? in, 96 out" in text


class RecordingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[int] = []

    def flush(self) -> None:
        self.flushes.append(len(self.getvalue()))


def test_exporter_prints_generation_spans_only_and_flushes_each_block() -> None:
    out = RecordingStream()
    exporter = CoreVitalConsoleSpanExporter(out)
    other = make_span({"http.route": "/x"}, scope="opentelemetry.instrumentation.flask")
    spans = [make_span(READ_OUT), other, make_span(READ_OUT)]
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    blocks = out.getvalue().split("\n\n")
    assert len([b for b in blocks if b.startswith("== CoreVital")]) == 2 and "/x" not in out.getvalue()
    assert len(out.flushes) == 2 and out.flushes[-1] == len(out.getvalue())


def test_exporter_survives_a_broken_stream_and_a_broken_span() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    assert CoreVitalConsoleSpanExporter(Broken()).export([make_span(READ_OUT)]) is SpanExportResult.FAILURE

    class NoAttributes:
        name = "text_completion x"
        instrumentation_scope = None

        @property
        def attributes(self) -> dict[str, Any]:
            raise RuntimeError("boom")

    out = io.StringIO()
    assert CoreVitalConsoleSpanExporter(out).export([NoAttributes()]) is SpanExportResult.SUCCESS  # type: ignore[list-item]
    assert (
        out.getvalue() == "== CoreVital: text_completion x == (read-out not shown: RuntimeError('boom'))\n\n"
    )


def test_exporter_writes_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    CoreVitalConsoleSpanExporter().export([make_span(READ_OUT)])
    assert "risk       0.99 high" in capsys.readouterr().out


def test_instrumented_generate_prints_one_block(instrument: Any, telemetry: Any) -> None:
    out = io.StringIO()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(CoreVitalConsoleSpanExporter(out)))
    instrument()
    model = tiny_models.llama()
    model.generate(
        **tiny_models.prompt(batch=1, length=5), max_new_tokens=6, min_new_tokens=6, do_sample=False
    )
    (block,) = [b for b in out.getvalue().split("\n\n") if b.strip()]
    (span,) = telemetry.spans()
    assert block.startswith(f"== CoreVital: {span.name} == trace {span.context.trace_id:032x}")
    assert "tokens     5 in, 6 out" in block and "finish length" in block
    score = format_risk(span.attributes[sc.COREVITAL_RISK_SCORE])
    assert f"risk       {score} {span.attributes[sc.COREVITAL_RISK_BAND]}" in block
    assert "narrative  Risk is" in block


# A model name that would clear the screen, fake a line and reverse the rest of the line, printed raw
HOSTILE_MODEL = "evil\x1b[2J\x1b[H\nrisk       0.01 low\u202eenil"


def test_control_characters_of_a_model_name_are_escaped() -> None:
    plain = format_generation(make_span(READ_OUT))
    attributes = {**READ_OUT, sc.GEN_AI_REQUEST_MODEL: HOSTILE_MODEL}
    text = format_generation(make_span(attributes, name=f"text_completion {HOSTILE_MODEL}"))
    assert "\x1b" not in text and "\u202e" not in text
    assert text.count("\n") == plain.count("\n")  # no line added
    assert "evil\\x1b[2J\\x1b[H\\nrisk" in text.splitlines()[0] and "\\u202eenil" in text.splitlines()[0]
    assert text.splitlines()[1].startswith("model      evil\\x1b[2J")
    table = format_metrics(record_metrics(HOSTILE_MODEL).get_metrics_data())
    assert "\x1b" not in table and "\u202e" not in table and "evil\\x1b[2J" in table


def record_metrics(model_name: str = "SmolLM2-135M-Instruct") -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    model = {sc.GEN_AI_REQUEST_MODEL: model_name}
    duration = meter.create_histogram(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION, unit="s")
    for seconds in (1.0, 2.0, 4.5):
        duration.record(seconds, {**model, sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_TEXT_COMPLETION})
    risk = meter.create_histogram(sc.METRIC_COREVITAL_RISK_SCORE, unit="1")
    risk.record(0.25, model)
    flags = meter.create_counter(sc.METRIC_COREVITAL_HEALTH_FLAGS, unit="{flag}")
    flags.add(2, {**model, sc.COREVITAL_FLAG_NAME: sc.FLAG_REPETITION_LOOP})
    meter.create_counter("http.server.requests").add(7)
    return reader


def test_metrics_table_shows_corevital_and_genai_metrics_only() -> None:
    text = format_metrics(record_metrics().get_metrics_data())
    lines = text.splitlines()
    assert lines[1] == f"for {sc.GEN_AI_REQUEST_MODEL}=SmolLM2-135M-Instruct"
    duration = next(line for line in lines if line.startswith(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION))
    assert duration.split() == [
        sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION,
        "text_completion",
        "3",
        "2.5",
        "1",
        "4.5",
        "s",
    ]
    flags = next(line for line in lines if line.startswith(sc.METRIC_COREVITAL_HEALTH_FLAGS))
    assert flags.split() == [sc.METRIC_COREVITAL_HEALTH_FLAGS, sc.FLAG_REPETITION_LOOP, "2", "{flag}"]
    assert "http.server.requests" not in text
    assert format_metrics(None) == ""


def test_metric_exporter_prints_the_latest_table_once_at_shutdown() -> None:
    out = io.StringIO()
    exporter = CoreVitalConsoleMetricExporter(out, flush_spans_first=False)
    data = record_metrics().get_metrics_data()
    assert data is not None
    assert exporter.export(data) is MetricExportResult.SUCCESS
    assert out.getvalue() == ""  # nothing between the read-out blocks
    exporter.shutdown()
    exporter.shutdown()
    assert out.getvalue().count("== CoreVital metrics") == 1


def test_metric_exporter_can_print_at_every_export_skipping_repeats() -> None:
    out = io.StringIO()
    exporter = CoreVitalConsoleMetricExporter(out, every_export=True, flush_spans_first=False)
    data = record_metrics().get_metrics_data()
    assert data is not None
    exporter.export(data)
    exporter.export(data)
    exporter.shutdown()
    assert out.getvalue().count("== CoreVital metrics") == 1
