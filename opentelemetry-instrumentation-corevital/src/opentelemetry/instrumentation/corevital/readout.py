"""The read-out: what one call's capture recorded, turned into what it means — one pure function.

:func:`read_out` takes plain host data (the :class:`~.capture.Recording`, the request, the outcome
with CoreVital's interventions already in it, the model profile) and returns the capture report
(the per-step series of every returned sequence) and the health report (``signals``). It is the
only place whose findings are reported: the streaming detectors run here once per sequence, over
the recorded steps (:class:`~.signals.streaming.SequenceMonitor`, the same implementation the live
``stop_on`` watch uses to decide stops), and ``signals.assess`` draws the conclusions. Nothing here
touches torch, the session or OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import report as rep
from .capture.recording import Recording, Steps
from .generation import GenerationOutcome, GenerationRequest
from .profiles import ModelProfile
from .signals import nanmean
from .signals.assess import HealthReport, assess_report
from .signals.calibration import CalibrationProfile
from .signals.flags import nonfinite_steps
from .signals.risk import DEFAULT_EXPECTED_FAILURE_RATE
from .signals.streaming import SequenceMonitor, replay
from .summaries import ATTENTION_LAYER_FIELDS, HIDDEN_LAYER_FIELDS, logit_metrics, surprisal_bits

__all__ = [
    "ReadOutError",
    "capture_report",
    "firings_of",
    "health_report",
    "input_row",
    "make_monitor",
    "read_out",
    "sequence_rows",
]


class ReadOutError(ValueError):
    """What was recorded does not fit what ``generate`` returned (reported, never raised to users)."""


def make_monitor(profile: ModelProfile, eos_token_ids: Sequence[int]) -> SequenceMonitor:
    """The streaming detectors of one sequence, set from the model profile (the live ``stop_on``
    watch and the read-out build theirs here, so both run the same detectors)."""
    return SequenceMonitor(
        high_entropy_threshold_bits=profile.high_entropy_threshold_bits,
        repetition_ngram=profile.repetition_ngram,
        repetition_similarity_threshold=profile.repetition_similarity_threshold,
        eos_token_ids=tuple(eos_token_ids),
        early_warning=profile.early_warning,
    )


def input_row(index: int, num_return_sequences: int) -> int:
    """The input row (prompt) of returned sequence ``index``.

    >>> [input_row(i, 2) for i in range(4)]
    [0, 0, 1, 1]
    """
    return index // max(1, num_return_sequences)


def sequence_rows(rows: int, returned: int, num_beams: int, num_return_sequences: int) -> list[int]:
    """The recorded row each returned sequence is read from.

    Without beams the rows are the returned sequences. With beam search the recorded rows are the
    running beams (``num_beams`` per input), and returned sequence ``j`` follows the ``j``-th best
    running beam of its input.

    >>> sequence_rows(4, 4, 1, 2)
    [0, 1, 2, 3]
    >>> sequence_rows(6, 4, 3, 2)  # 2 inputs × 3 beams, 2 returned per input
    [0, 1, 3, 4]
    """
    if rows == returned:
        return list(range(returned))
    per_input = max(1, num_return_sequences)
    if num_beams > 1 and returned % per_input == 0 and rows == returned // per_input * num_beams:
        return [input_row(j, per_input) * num_beams + j % per_input for j in range(returned)]
    raise ReadOutError(f"{rows} recorded rows do not match {returned} returned sequences")


def read_out(
    recording: Recording,
    request: GenerationRequest,
    outcome: GenerationOutcome,
    profile: ModelProfile | None,
    *,
    assess: bool = True,
    calibration: CalibrationProfile | None = None,
    expected_failure_rate: float | None = DEFAULT_EXPECTED_FAILURE_RATE,
    token_text: Callable[[int, int], str] | None = None,
    model: str = "",
    trace_id: str = "",
    span_id: str = "",
) -> tuple[rep.CaptureReport | None, HealthReport | None]:
    """The capture report and the health report of one call.

    Args:
        recording: what the capture recorded (``capture.CaptureSession.finish``).
        request: the resolved request.
        outcome: what ``generate`` returned, the sequences CoreVital stopped already cut at their
            intervention (``GenerationOutcome.stopped``).
        profile: the model profile (thresholds, detectors, risk model); ``None``: no health report.
        assess: draw the conclusions (``False``: the capture report only — nobody reads them).
        calibration: a healthy-run profile; gives each sequence a divergence score.
        expected_failure_rate: the share of failed generations the user expects (the risk prior).
        token_text: ``token_text(sequence_index, step)`` names a generated token (content capture
            only; without it no token text appears in the narrative).
        model, trace_id, span_id: the model name and the span the health report belongs to.

    Returns:
        ``(capture, health)``; ``capture`` is ``None`` when nothing was captured (no capture level,
        or the capture failed), ``health`` when nothing was assessed.
    """
    capture = capture_report(recording, request, outcome, profile)
    if capture is None or not assess or profile is None:
        return capture, None
    health = health_report(
        capture,
        profile,
        calibration=calibration,
        expected_failure_rate=expected_failure_rate,
        token_text=token_text,
        model=model,
        trace_id=trace_id,
        span_id=span_id,
    )
    return capture, health


def capture_report(
    recording: Recording,
    request: GenerationRequest,
    outcome: GenerationOutcome,
    profile: ModelProfile | None = None,
) -> rep.CaptureReport | None:
    """The first half of :func:`read_out`: the per-step series of every returned sequence, with
    what the streaming detectors find in it (``profile``'s detectors; none without a profile)."""
    if recording.level is None or recording.error is not None:
        return None
    capture = rep.CaptureReport(
        recording.level,
        hidden_size=recording.hidden_size,
        attention_heads=recording.attention_heads,
        step_times_ns=list(recording.step_times_ns),
        time_to_first_token=recording.time_to_first_token,
        overhead_seconds=recording.overhead_seconds,
        unavailable=dict(recording.unavailable),
    )
    steps = recording.steps
    if steps is None or steps.packed.shape[0] == 0:
        return capture
    rows = sequence_rows(
        steps.packed.shape[1], len(outcome.output_lengths), request.num_beams, request.num_return_sequences
    )
    # Beam rows change meaning between steps: nothing streams over them.
    streaming = (profile, request.eos_token_ids) if profile is not None and request.num_beams <= 1 else None
    capture.sequences = [
        _sequence(steps, index, row, request, outcome, recording.step_times_ns, streaming)
        for index, row in enumerate(rows)
    ]
    for sequence, row in zip(capture.sequences, rows, strict=True):
        sequence.intervention = recording.interventions.get(row)
    return capture


def health_report(
    capture: rep.CaptureReport,
    profile: ModelProfile,
    *,
    calibration: CalibrationProfile | None = None,
    expected_failure_rate: float | None = DEFAULT_EXPECTED_FAILURE_RATE,
    token_text: Callable[[int, int], str] | None = None,
    model: str = "",
    trace_id: str = "",
    span_id: str = "",
) -> HealthReport | None:
    """The second half of :func:`read_out`: what the capture report means, judged with the model
    profile's thresholds, baseline and risk model (``signals.assess``)."""
    return assess_report(
        capture,
        profile.thresholds,
        calibration=calibration,
        token_text=token_text,
        expected_failure_rate=expected_failure_rate,
        model=model,
        trace_id=trace_id,
        span_id=span_id,
    )


def _sequence(
    steps: Steps,
    index: int,
    row: int,
    request: GenerationRequest,
    outcome: GenerationOutcome,
    step_times_ns: Sequence[int],
    streaming: tuple[ModelProfile, Sequence[int]] | None,
) -> rep.SequenceReport:
    """The per-step read-out of returned sequence ``index`` (recorded row ``row``), cut at its end."""
    layout = steps.layout
    n = min(outcome.output_lengths[index], steps.packed.shape[0])
    data = steps.packed[:n, row]
    metrics = logit_metrics(data[:, layout.logits])
    series = {
        rep.SERIES_ENTROPY: metrics["entropy"],
        rep.SERIES_MARGIN: metrics["margin"],
        rep.SERIES_TOPK_MASS: metrics["topk_mass"],
        rep.SERIES_TOP1_PROB: metrics["top_probs"][:, 0],
        rep.SERIES_SURPRISAL: surprisal_bits(steps.chosen[:n, row]),
    }
    tokens = _generated_tokens(outcome.sequences, index, request.prompt_length, n)
    report = rep.SequenceReport(
        index=index,
        output_tokens=outcome.output_lengths[index],
        finish_reason=outcome.finish_reasons[index],
        series=series,
        top_probs=metrics["top_probs"],
        top_ids=metrics["top_ids"],
        tokens=tokens,
        prompt_tokens=request.prompt_tokens(input_row(index, request.num_return_sequences)),
    )
    if layout.hidden_layers:
        hidden = layout.hidden_fields(data)
        report.hidden_layers = {name: hidden[:, :, i] for i, name in enumerate(HIDDEN_LAYER_FIELDS)}
        series[rep.SERIES_HIDDEN_L2_NORM] = hidden[:, -1, HIDDEN_LAYER_FIELDS.index("l2_norm")]
        series[rep.SERIES_HIDDEN_COSINE_PREVIOUS] = data[:, layout.cosine_previous]
        series[rep.SERIES_HIDDEN_MAX_SIMILARITY] = data[:, layout.max_similarity]
        if steps.projected is not None:
            report.state_projection = steps.projected[:n, row]
    if layout.attention_layers:
        attention = layout.attention_fields(data)
        report.attention_layers = {name: attention[:, :, i] for i, name in enumerate(ATTENTION_LAYER_FIELDS)}
        normalized = attention[:, :, ATTENTION_LAYER_FIELDS.index("entropy_normalized_mean")]
        series[rep.SERIES_ATTENTION_ENTROPY_NORMALIZED] = nanmean(normalized, axis=1)  # all-NaN rows: NaN
        collapsed = attention[:, :, ATTENTION_LAYER_FIELDS.index("collapsed_heads")]
        series[rep.SERIES_ATTENTION_COLLAPSED_HEADS] = collapsed.sum(axis=1)
    if streaming is not None:
        report.firings = firings_of(report, *streaming, step_times_ns)
        report.streamed = True
    return report


def firings_of(
    sequence: rep.SequenceReport,
    profile: ModelProfile,
    eos_token_ids: Sequence[int] = (),
    step_times_ns: Sequence[int] = (),
) -> list[rep.Firing]:
    """What the streaming detectors find in one sequence's series and layers, replayed step by step
    as they ran live (the same monitor a live ``stop_on`` watch runs)."""
    monitor = make_monitor(profile, eos_token_ids)
    monitor.clock = lambda step: step_times_ns[step] if step < len(step_times_ns) else 0
    series, hidden = sequence.series, sequence.hidden_layers
    entropy = series[rep.SERIES_ENTROPY]
    none = np.zeros(len(entropy), dtype=bool)
    replay(
        monitor,
        entropy,
        series[rep.SERIES_MARGIN],
        series[rep.SERIES_SURPRISAL],
        series.get(rep.SERIES_HIDDEN_MAX_SIMILARITY),
        nonfinite_steps(hidden["nan_count"]) if "nan_count" in hidden else none,
        nonfinite_steps(hidden["inf_count"]) if "inf_count" in hidden else none,
        sequence.tokens,
    )
    return [firing for firing in monitor.firings if firing.step < len(entropy)]


def _generated_tokens(sequences: object, index: int, prompt_length: int, steps: int) -> list[int]:
    """The generated token ids of returned sequence ``index`` (empty without sequences)."""
    shape = getattr(sequences, "shape", None)
    if sequences is None or shape is None or index >= shape[0]:
        return []
    return [int(t) for t in sequences[index, prompt_length : prompt_length + steps].tolist()]  # type: ignore[index]
