"""The read-out on recorded arrays, without a model: ``readout.read_out`` is a pure function from what
a capture recorded (plus the request, the outcome and the profile) to the capture and health reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.capture import Recording, StepLayout, Steps
from opentelemetry.instrumentation.corevital.generation import GenerationOutcome, GenerationRequest
from opentelemetry.instrumentation.corevital.profiles import ModelProfile
from opentelemetry.instrumentation.corevital.readout import ReadOutError, read_out, sequence_rows
from opentelemetry.instrumentation.corevital.report import HEALTH_FLAG, Intervention
from opentelemetry.instrumentation.corevital.summaries import summarize_hidden, summarize_logits

VOCAB, LAYERS, HIDDEN = 16, 3, 8
PROFILE = ModelProfile(repetition_ngram=3, repetition_similarity_threshold=0.0)


def recorded(
    logits: torch.Tensor, states: torch.Tensor | None = None, chosen: np.ndarray | None = None
) -> Steps:
    """Steps as a capture session hands them over: ``logits`` ``[steps, rows, vocab]``, ``states``
    ``[steps, layers, rows, hidden]`` (hidden level), summarised by the same functions."""
    steps, rows, _ = logits.shape
    layout = StepLayout(hidden_layers=states.shape[1] if states is not None else 0)
    packed = []
    for t in range(steps):
        parts = [summarize_logits(logits[t])[0]]
        if states is not None:
            parts += [summarize_hidden(states[t]).flatten(1), torch.full((rows, 2), 0.5)]
        packed.append(torch.cat(parts, dim=1))
    data = torch.stack(packed).double().numpy()
    assert data.shape[-1] == layout.width
    if chosen is None:
        chosen = np.full((steps, rows), 0.5)
    return Steps(layout, data, chosen)


def request(rows: int = 1, prompt: int = 2, **kwargs: object) -> GenerationRequest:
    ids = torch.arange(3, 3 + rows * prompt).reshape(rows, prompt)
    return GenerationRequest(
        model_name="tiny", prompt_length=prompt, input_ids=ids, eos_token_ids=(2,), **kwargs
    )


def outcome(tokens: list[list[int]], prompt: int = 2, reasons: list[str] | None = None) -> GenerationOutcome:
    width = max(len(t) for t in tokens)
    sequences = torch.zeros(len(tokens), prompt + width, dtype=torch.long)
    for i, row in enumerate(tokens):
        sequences[i, prompt : prompt + len(row)] = torch.tensor(row)
    lengths = [len(t) for t in tokens]
    return GenerationOutcome(lengths, reasons or [sc.FINISH_REASON_LENGTH] * len(tokens), sequences)


def test_series_are_the_recorded_steps_cut_at_each_sequences_end() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 2, VOCAB)
    steps = recorded(logits, torch.randn(5, LAYERS, 2, HIDDEN))
    capture, health = read_out(
        Recording("hidden", steps, step_times_ns=tuple(range(5))),
        request(rows=2),
        outcome([[5, 6, 7, 8, 9], [5, 6, 2]], reasons=[sc.FINISH_REASON_LENGTH, sc.FINISH_REASON_STOP]),
        PROFILE,
        model="tiny",
        trace_id="ab" * 16,
    )
    assert capture is not None and health is not None
    first, second = capture.sequences
    assert (first.steps, second.steps) == (5, 3)
    probs = torch.softmax(logits[:, 1].double(), dim=-1)
    expected = -(probs * probs.log2()).sum(dim=-1)[:3].numpy()
    np.testing.assert_allclose(second.series["entropy"], expected, rtol=1e-5)
    assert second.tokens == [5, 6, 2] and second.finish_reason == sc.FINISH_REASON_STOP
    np.testing.assert_allclose(second.series["surprisal"], [1.0, 1.0, 1.0])
    assert first.hidden_layers["l2_norm"].shape == (5, LAYERS)
    assert health.model == "tiny" and health.trace_id == "ab" * 16
    assert [s.index for s in health.sequences] == [0, 1]


def test_a_repeated_ngram_fires_the_repetition_flag_at_its_step() -> None:
    loop = [5, 6, 7] * 4
    steps = recorded(torch.zeros(len(loop), 1, VOCAB), torch.ones(len(loop), LAYERS, 1, HIDDEN))
    capture, health = read_out(Recording("hidden", steps), request(), outcome([loop]), PROFILE)
    assert capture is not None and health is not None
    firing = next(f for f in capture.sequences[0].firings if f.name == sc.FLAG_REPETITION_LOOP)
    assert firing.kind == HEALTH_FLAG and firing.step == 5  # the second 5, 6, 7 completes the n-gram
    assert sc.FLAG_REPETITION_LOOP in health.flags


def test_nan_in_a_layer_is_flagged_at_its_step_and_the_layer_blamed() -> None:
    states = torch.randn(6, LAYERS, 1, HIDDEN, generator=torch.Generator().manual_seed(1))
    states[3, 1] = float("nan")
    steps = recorded(torch.zeros(6, 1, VOCAB), states)
    capture, health = read_out(Recording("hidden", steps), request(), outcome([[5, 6, 7, 8, 9, 10]]), PROFILE)
    assert capture is not None and health is not None
    assert health.primary.flags.fired[sc.FLAG_NAN_DETECTED] == 3
    assert health.risk_score == 1.0
    assert 1 in health.blamed_layers


def test_an_intervention_is_part_of_the_outcome_it_is_read_with() -> None:
    steps = recorded(torch.zeros(6, 1, VOCAB))
    stopped = Intervention(0, sc.FLAG_REPETITION_LOOP, 3)
    recording = Recording("logits", steps, interventions={0: stopped})
    cut = outcome([[5, 6, 7, 8, 9, 10]]).stopped(recording.interventions)
    assert cut.output_lengths == [4] and cut.finish_reasons == [sc.FINISH_REASON_COREVITAL_STOPPED]
    capture, _ = read_out(recording, request(), cut, PROFILE)
    assert capture is not None
    assert capture.sequences[0].steps == 4
    assert capture.interventions == [stopped]


def test_beam_rows_follow_the_jth_best_beam_and_stream_nothing() -> None:
    assert sequence_rows(6, 4, 3, 2) == [0, 1, 3, 4]
    with pytest.raises(ReadOutError):
        sequence_rows(5, 4, 3, 2)
    steps = recorded(torch.zeros(4, 6, VOCAB))
    beams = request(rows=2, num_beams=3, num_return_sequences=2)
    capture, health = read_out(Recording("logits", steps), beams, outcome([[5, 6, 7, 8]] * 4), PROFILE)
    assert capture is not None and health is not None
    assert len(capture.sequences) == 4 and not any(s.streamed for s in capture.sequences)


def test_nothing_to_read_gives_no_reports() -> None:
    steps = recorded(torch.zeros(3, 1, VOCAB))
    result = outcome([[5, 6, 7]])
    assert read_out(Recording(None, steps), request(), result, PROFILE) == (None, None)
    failed = Recording("hidden", steps, error=RuntimeError("boom"))
    assert read_out(failed, request(), result, PROFILE) == (None, None)
    capture, health = read_out(
        Recording("hidden", None, unavailable={"attention": "why"}), request(), result, PROFILE
    )
    assert capture is not None and capture.sequences == [] and capture.unavailable == {"attention": "why"}
    assert health is None
    capture, health = read_out(Recording("logits", steps), request(), result, PROFILE, assess=False)
    assert capture is not None and len(capture.sequences) == 1 and health is None


def test_the_read_out_is_pure() -> None:
    """The same recording read twice gives the same reports, and is not changed by reading."""
    steps = recorded(torch.randn(4, 1, VOCAB, generator=torch.Generator().manual_seed(3)))
    before = steps.packed.copy()
    recording = Recording("logits", steps, step_times_ns=(1, 2, 3, 4))
    a = read_out(recording, request(), outcome([[5, 6, 7, 8]]), PROFILE)[1]
    b = read_out(recording, request(), outcome([[5, 6, 7, 8]]), PROFILE)[1]
    assert a is not None and b is not None
    assert a.risk_score == b.risk_score and a.flags == b.flags
    np.testing.assert_array_equal(steps.packed, before)
    assert not math.isnan(a.risk_score)
