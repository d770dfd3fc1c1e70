"""Health reports in code: ``health_reports()`` and ``instrument(on_report=...)``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import tiny_models
from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor, HealthReport, health_reports
from opentelemetry.instrumentation.corevital import semconv as sc


def test_the_report_is_the_span_s_read_out(instrument, telemetry) -> None:
    instrument()
    with health_reports() as reports:
        tiny_models.llama().generate(**tiny_models.prompt(batch=2), max_new_tokens=5, do_sample=False)
    assert len(reports) == 1
    report = reports.last
    assert isinstance(report, HealthReport)
    span = telemetry.span()
    a = span.attributes
    assert round(report.risk_score, 6) == a[sc.COREVITAL_RISK_SCORE]
    assert report.risk_band == a[sc.COREVITAL_RISK_BAND]
    assert report.flags == list(a[sc.COREVITAL_FLAGS])
    assert report.blamed_layers == list(a[sc.COREVITAL_LAYER_BLAME_LAYERS])
    assert report.narrative == a[sc.COREVITAL_NARRATIVE]
    assert report.trace_id == format(span.context.trace_id, "032x")
    assert report.model == "LlamaForCausalLM"
    assert len(report.sequences) == 2 and report.primary is report.sequences[report.worst]
    assert max(len(s.series["entropy"]) for s in report.capture.sequences) == a[sc.COREVITAL_STEPS]


def test_no_report_outside_a_block_and_blocks_nest(instrument, telemetry) -> None:
    instrument()
    model, inputs = tiny_models.llama(), tiny_models.prompt()
    with health_reports() as outer:
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
        with health_reports() as inner:
            model.generate(**inputs, max_new_tokens=3, do_sample=False)
    model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert len(outer) == 2 and len(inner) == 1
    assert inner.last is not outer.last and inner.last.risk_score == outer.last.risk_score  # each its own


def test_no_consumer_can_change_another_s_report(telemetry) -> None:
    """``on_report`` and two nested ``health_reports()`` blocks: each gets a report of its own, so a
    callback that edits its report (or a block that edits its own afterwards) changes no other."""
    seen: list[HealthReport] = []

    def vandal(report: HealthReport) -> None:
        seen.append(report)
        report.model = "changed"
        report.capture.sequences[0].series["entropy"][:] = 99.0

    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, on_report=vandal)
    try:
        with health_reports() as outer, health_reports() as inner:
            tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=6, do_sample=False)
    finally:
        instrumentor.uninstrument()
    assert len(seen) == len(outer) == len(inner) == 1
    assert len({id(seen[0]), id(outer.last), id(inner.last)}) == 3
    for report in (outer.last, inner.last):
        assert report.model == "LlamaForCausalLM"
        assert float(report.capture.sequences[0].series["entropy"].max()) < 99.0
    inner.last.capture.sequences[0].series["entropy"][:] = -1.0
    assert float(outer.last.capture.sequences[0].series["entropy"].min()) >= 0.0
    entropy = telemetry.span().attributes[sc.COREVITAL_ENTROPY_MEAN]  # written before any consumer ran
    assert abs(entropy - float(outer.last.capture.sequences[0].series["entropy"].mean())) < 1e-3


def test_each_thread_sees_its_own_calls(instrument, telemetry) -> None:
    instrument()
    model = tiny_models.llama()
    seen: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(tokens: int) -> None:
        try:
            with health_reports() as reports:
                for _ in range(4):
                    model.generate(**tiny_models.prompt(), max_new_tokens=tokens, min_new_tokens=tokens,
                                   do_sample=False)  # fmt: skip
            seen[tokens] = [r.capture.sequences[0].output_tokens for r in reports]
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (2, 3, 4, 5, 6, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert seen == {n: [n] * 4 for n in (2, 3, 4, 5, 6, 7)}


def test_reports_even_for_unsampled_spans_when_collected(telemetry) -> None:
    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    try:
        with health_reports() as reports:
            tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=4, do_sample=False)
    finally:
        instrumentor.uninstrument()
    assert telemetry.spans() == []
    assert reports.last is not None and 0.0 <= reports.last.risk_score <= 1.0


def test_on_report_callback_and_a_raising_one(instrument, telemetry) -> None:
    received: list[Any] = []
    instrument(on_report=received.append)
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=3, do_sample=False)
    assert len(received) == 1 and received[0].risk_band in ("low", "moderate", "high")

    def raising(report: Any) -> None:
        raise ValueError("the application's bug")

    instrument(on_report=raising)
    out = tiny_models.llama().generate(
        **tiny_models.prompt(), max_new_tokens=3, min_new_tokens=3, do_sample=False
    )
    assert out.shape[1] == 9  # the call returned normally
    assert telemetry.spans()[-1].attributes[sc.COREVITAL_RISK_SCORE] >= 0


@pytest.mark.real_model
def test_the_readme_example_runs(smollm2) -> None:
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "health_reports.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "first try: risk" in done.stdout
    assert "Traceback" not in done.stderr
