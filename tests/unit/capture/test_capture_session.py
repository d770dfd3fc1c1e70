"""The capture session fed forward outputs directly, without a model: what it asks the forward for,
what it records, what it drops, what it stops, and what it hands over."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.capture import CaptureSession, Recording
from opentelemetry.instrumentation.corevital.config import CaptureLevel
from opentelemetry.instrumentation.corevital.generation import GenerationRequest
from opentelemetry.instrumentation.corevital.profiles import ModelProfile
from opentelemetry.instrumentation.corevital.readout import make_monitor

VOCAB, LAYERS, HIDDEN = 12, 3, 8


class Model(torch.nn.Module):
    """Stands for a transformers model: the session reads only its forward's signature."""

    def forward(self, input_ids: Any = None, **kwargs: Any) -> Any:  # pragma: no cover - never run
        raise AssertionError("the session never calls the model")


Model.__module__ = "transformers.models.fake"  # routes output_* flags through **kwargs


class Output(dict):  # type: ignore[type-arg]
    """A forward's output: attribute access like transformers' ModelOutput."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def forward(session: CaptureSession, ids: torch.Tensor, logits: torch.Tensor, hidden: torch.Tensor) -> Output:
    """One forward as the hooks report it: ``before_forward`` sees the kwargs, ``after_forward`` the
    output (hidden states only when they were asked for)."""
    kwargs: dict[str, Any] = {"input_ids": ids}
    changed = session.before_forward((), kwargs)
    if changed is not None:
        kwargs = changed[1]
    output = Output(logits=logits[:, None, :])
    if kwargs.get("output_hidden_states"):
        output["hidden_states"] = (hidden[0][:, None], *(h[:, None] for h in hidden))
    session.after_forward(kwargs, output)
    return output


def request(rows: int = 1) -> GenerationRequest:
    return GenerationRequest(
        model_name="fake", prompt_length=1, input_ids=torch.ones(rows, 1, dtype=torch.long)
    )


def test_it_asks_for_hidden_states_records_each_step_and_drops_what_it_asked_for() -> None:
    session = CaptureSession(Model(), request(), CaptureLevel.HIDDEN)
    generator = torch.Generator().manual_seed(0)
    outputs = []
    ids = torch.ones(1, 1, dtype=torch.long)
    for _ in range(4):
        output = forward(
            session, ids, torch.randn(1, VOCAB, generator=generator), torch.randn(LAYERS, 1, HIDDEN)
        )
        outputs.append(output)
        ids = torch.cat((ids, torch.tensor([[3]])), dim=1)
    assert all(o.hidden_states is None for o in outputs)  # what only the capture asked for is gone
    recording = session.finish(ids)
    assert isinstance(recording, Recording) and recording.error is None
    assert recording.level == "hidden" and recording.hidden_size == HIDDEN
    assert recording.steps is not None
    steps = recording.steps
    assert steps.packed.shape == (4, 1, steps.layout.width) and steps.layout.hidden_layers == LAYERS
    assert np.isfinite(steps.layout.hidden_fields(steps.packed)).all()
    assert len(recording.step_times_ns) == 4 and recording.time_to_first_token is not None


def test_an_unsampled_call_records_timing_only() -> None:
    session = CaptureSession(Model(), request(), None)
    output = forward(
        session, torch.ones(1, 1, dtype=torch.long), torch.randn(1, VOCAB), torch.randn(LAYERS, 1, HIDDEN)
    )
    assert output.hidden_states is None  # nothing was asked for
    recording = session.finish()
    assert recording.level is None and recording.steps is None
    assert recording.time_to_first_token is not None


def test_its_own_failure_is_reported_once_and_the_recording_dropped() -> None:
    errors: list[BaseException] = []
    session = CaptureSession(Model(), request(), CaptureLevel.LOGITS, on_error=errors.append)
    session.after_forward({}, Output(logits=None))  # a forward without logits
    session.after_forward({}, Output(logits=None))
    assert len(errors) == 1
    recording = session.finish()
    assert recording.error is errors[0] and recording.steps is None


def test_stop_on_stops_the_row_its_signal_fired_in_and_hands_over_the_intervention() -> None:
    profile = ModelProfile(repetition_ngram=2, repetition_similarity_threshold=0.0)
    session = CaptureSession(
        Model(),
        request(rows=2),
        CaptureLevel.LOGITS,
        make_monitor=lambda: make_monitor(profile, ()),
        stop_on=[sc.FLAG_REPETITION_LOOP],
    )
    ids = torch.ones(2, 1, dtype=torch.long)
    tokens = [[5, 6], [5, 7], [5, 8], [5, 9]]  # row 0 repeats "5 5"; row 1 never repeats
    stops = []
    for step, (a, b) in enumerate(tokens):
        forward(session, ids, torch.zeros(2, VOCAB), torch.zeros(LAYERS, 2, HIDDEN))
        ids = torch.cat((ids, torch.tensor([[a], [b]])), dim=1)
        stops.append(session.stop_mask(ids).tolist())
        assert step < 4
    assert stops[0] == [False, False]
    assert any(s[0] for s in stops) and not any(s[1] for s in stops)
    recording = session.finish(ids)
    (stopped,) = recording.interventions.values()
    assert stopped.row == 0 and stopped.signal == sc.FLAG_REPETITION_LOOP


def test_a_lowered_level_says_why() -> None:
    session = CaptureSession(
        Model(), request(), CaptureLevel.ATTENTION, unavailable={"attention": "not here"}
    )
    assert session.level is CaptureLevel.HIDDEN
    assert session.finish().unavailable == {"attention": "not here"}
