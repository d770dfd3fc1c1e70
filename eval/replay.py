"""The package's own health read-out, replayed offline on the cached generations.

``generate.py`` keeps, per item, what the capture report of the call held (``arrays/<key>.npz``:
the per-step series, the per-step, per-layer hidden-state statistics, the generated and prompt
token ids, the projected middle-layer states). This module rebuilds that
``report.CaptureReport`` — with the streaming firings replayed by the read-out's own replay
(``readout.firings_of``) — and hands it to the package's read-out
(``signals.assess.assess_report``) with any model profile: every signal a user sees, for every
cached item, in milliseconds.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opentelemetry.instrumentation.corevital import report as rep
from opentelemetry.instrumentation.corevital.profiles import ModelProfile, profile_for
from opentelemetry.instrumentation.corevital.readout import firings_of
from opentelemetry.instrumentation.corevital.signals.assess import HealthReport, assess_report
from opentelemetry.instrumentation.corevital.signals.risk import DEFAULT_EXPECTED_FAILURE_RATE


@dataclass
class Arrays:
    """What the capture report of one cached generation held."""

    tokens: list[int]
    prompt_tokens: list[int]
    series: dict[str, np.ndarray]
    hidden: dict[str, np.ndarray] = field(default_factory=dict)
    projection: np.ndarray | None = None


def load_arrays(path: Path) -> Arrays | None:
    """The side file of one item (``None`` when it was cached before side files were written)."""
    if not path.exists():
        return None
    with np.load(path) as data:
        series = {
            k.split("/", 1)[1]: data[k].astype(np.float64) for k in data.files if k.startswith("series/")
        }
        hidden = {
            k.split("/", 1)[1]: data[k].astype(np.float64) for k in data.files if k.startswith("hidden/")
        }
        projection = data["state_projection"].astype(np.float64) if "state_projection" in data.files else None
        return Arrays(
            [int(t) for t in data["tokens"]],
            [int(t) for t in data["prompt_tokens"]],
            series,
            hidden,
            projection,
        )


@dataclass(frozen=True)
class ModelShape:
    """What the profile selection reads of a model: its class, type and size."""

    model_class: str
    model_type: str
    hidden_size: int
    layers: int
    vocab_size: int


def stand_in(shape: ModelShape) -> Any:
    """An object that looks like the model to ``profiles.profile_for`` (class name and config)."""
    config = types.SimpleNamespace(
        model_type=shape.model_type,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.layers,
        vocab_size=shape.vocab_size,
        get_text_config=lambda: config,
    )
    return type(shape.model_class, (), {"config": config})()


@functools.cache
def shipped_profile(shape: ModelShape) -> ModelProfile:
    """The profile the instrumentor picks for a model of this shape, from the shipped profiles."""
    return profile_for(stand_in(shape))


def capture_report(
    arrays: Arrays, finish_reason: str, hidden_size: int, profile: ModelProfile
) -> rep.CaptureReport:
    """The capture report of the call, as the instrumentor built it (one sequence, greedy)."""
    steps = len(arrays.series[rep.SERIES_ENTROPY])
    sequence = rep.SequenceReport(
        index=0,
        output_tokens=len(arrays.tokens),
        finish_reason=finish_reason,
        series=dict(arrays.series),
        hidden_layers=dict(arrays.hidden),
        tokens=list(arrays.tokens[:steps]),
        prompt_tokens=list(arrays.prompt_tokens),
        state_projection=arrays.projection,
        streamed=True,
    )
    sequence.firings = firings_of(sequence, profile)
    level = "hidden" if arrays.hidden else "logits"
    return rep.CaptureReport(level, [sequence], hidden_size=hidden_size)


def read_out(
    arrays: Arrays,
    finish_reason: str,
    hidden_size: int,
    profile: ModelProfile,
    expected_failure_rate: float | None = DEFAULT_EXPECTED_FAILURE_RATE,
) -> HealthReport:
    """The package's health report of one cached generation under ``profile``."""
    report = capture_report(arrays, finish_reason, hidden_size, profile)
    health = assess_report(report, profile.thresholds, expected_failure_rate=expected_failure_rate)
    assert health is not None
    return health
