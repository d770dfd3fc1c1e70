"""Turning requests, outcomes and capture reports into span and event attributes (plain dicts).

Exported values are always finite: a per-step series holds the run of defined steps (leading undefined
steps such as the first step of ``hidden.cosine_previous`` are left out, and the series stops at the
first undefined step after them, e.g. where the model produced NaN); a per-layer array with an
undefined layer is left out; an undefined statistic is left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import report as rep
from .. import semconv as sc
from ..generation import GenerationOutcome, GenerationRequest
from ..messages import Messages
from ..signals import downsample, layer_aggregate, pooled
from ..signals.series import Reduction

Attributes = dict[str, Any]

# series name -> (mean, min, max, series) attribute keys
_SERIES_KEYS: dict[str, tuple[str, str, str, str]] = {
    rep.SERIES_ENTROPY: (
        sc.COREVITAL_ENTROPY_MEAN, sc.COREVITAL_ENTROPY_MIN, sc.COREVITAL_ENTROPY_MAX,
        sc.COREVITAL_ENTROPY_SERIES,
    ),
    rep.SERIES_MARGIN: (
        sc.COREVITAL_MARGIN_MEAN, sc.COREVITAL_MARGIN_MIN, sc.COREVITAL_MARGIN_MAX,
        sc.COREVITAL_MARGIN_SERIES,
    ),
    rep.SERIES_TOPK_MASS: (
        sc.COREVITAL_TOPK_MASS_MEAN, sc.COREVITAL_TOPK_MASS_MIN, sc.COREVITAL_TOPK_MASS_MAX,
        sc.COREVITAL_TOPK_MASS_SERIES,
    ),
    rep.SERIES_TOP1_PROB: (
        sc.COREVITAL_TOP1_PROB_MEAN, sc.COREVITAL_TOP1_PROB_MIN, sc.COREVITAL_TOP1_PROB_MAX,
        sc.COREVITAL_TOP1_PROB_SERIES,
    ),
    rep.SERIES_SURPRISAL: (
        sc.COREVITAL_SURPRISAL_MEAN, sc.COREVITAL_SURPRISAL_MIN, sc.COREVITAL_SURPRISAL_MAX,
        sc.COREVITAL_SURPRISAL_SERIES,
    ),
    rep.SERIES_HIDDEN_L2_NORM: (
        sc.COREVITAL_HIDDEN_L2_NORM_MEAN, sc.COREVITAL_HIDDEN_L2_NORM_MIN, sc.COREVITAL_HIDDEN_L2_NORM_MAX,
        sc.COREVITAL_HIDDEN_L2_NORM_SERIES,
    ),
    rep.SERIES_HIDDEN_COSINE_PREVIOUS: (
        sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_MEAN, sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_MIN,
        sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_MAX, sc.COREVITAL_HIDDEN_COSINE_PREVIOUS_SERIES,
    ),
    rep.SERIES_HIDDEN_MAX_SIMILARITY: (
        sc.COREVITAL_HIDDEN_MAX_SIMILARITY_MEAN,
        sc.COREVITAL_HIDDEN_MAX_SIMILARITY_MIN,
        sc.COREVITAL_HIDDEN_MAX_SIMILARITY_MAX,
        sc.COREVITAL_HIDDEN_MAX_SIMILARITY_SERIES,
    ),
    rep.SERIES_ATTENTION_ENTROPY_NORMALIZED: (
        sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MEAN, sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MIN,
        sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MAX, sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_SERIES,
    ),
    rep.SERIES_ATTENTION_COLLAPSED_HEADS: (
        sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_MEAN, sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_MIN,
        sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_MAX, sc.COREVITAL_ATTENTION_COLLAPSED_HEADS_SERIES,
    ),
}  # fmt: skip

# (report field, reduction over steps, attribute key, as integers)
_HIDDEN_LAYER_KEYS: tuple[tuple[str, Reduction, str, bool], ...] = (
    ("l2_norm", "mean", sc.COREVITAL_HIDDEN_LAYER_L2_NORM_MEAN, False),
    ("l2_norm", "max", sc.COREVITAL_HIDDEN_LAYER_L2_NORM_MAX, False),
    ("std", "mean", sc.COREVITAL_HIDDEN_LAYER_STD_MEAN, False),
    ("mean", "mean", sc.COREVITAL_HIDDEN_LAYER_MEAN_MEAN, False),
    ("max_abs", "max", sc.COREVITAL_HIDDEN_LAYER_MAX_ABS, False),
    ("nan_count", "sum", sc.COREVITAL_HIDDEN_LAYER_NAN_COUNT, True),
    ("inf_count", "sum", sc.COREVITAL_HIDDEN_LAYER_INF_COUNT, True),
)
_ATTENTION_LAYER_KEYS: tuple[tuple[str, Reduction, str, bool], ...] = (
    ("entropy_mean", "mean", sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN, False),
    ("entropy_min", "min", sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MIN, False),
    ("entropy_max", "max", sc.COREVITAL_ATTENTION_LAYER_ENTROPY_MAX, False),
    ("entropy_normalized_mean", "mean", sc.COREVITAL_ATTENTION_LAYER_ENTROPY_NORMALIZED_MEAN, False),
    ("concentration_mean", "mean", sc.COREVITAL_ATTENTION_LAYER_CONCENTRATION_MEAN, False),
    ("collapsed_heads", "mean", sc.COREVITAL_ATTENTION_LAYER_COLLAPSED_HEADS_MEAN, False),
    ("focused_heads", "mean", sc.COREVITAL_ATTENTION_LAYER_FOCUSED_HEADS_MEAN, False),
    ("basin_score", "mean", sc.COREVITAL_ATTENTION_LAYER_BASIN_SCORE_MEAN, False),
)


def request_attributes(request: GenerationRequest) -> Attributes:
    """GenAI request attributes, known before the call runs."""
    attributes: Attributes = {
        sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_TEXT_COMPLETION,
        sc.GEN_AI_PROVIDER_NAME: sc.GEN_AI_PROVIDER_HUGGINGFACE,
        sc.GEN_AI_REQUEST_MODEL: request.model_name,
    }
    optional = {
        sc.GEN_AI_REQUEST_MAX_TOKENS: request.max_new_tokens,
        sc.GEN_AI_REQUEST_TEMPERATURE: request.temperature,
        sc.GEN_AI_REQUEST_TOP_P: request.top_p,
        sc.GEN_AI_REQUEST_TOP_K: float(request.top_k) if request.top_k is not None else None,  # spec: double
        sc.GEN_AI_REQUEST_SEED: request.seed,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    if request.num_return_sequences > 1:
        attributes[sc.GEN_AI_REQUEST_CHOICE_COUNT] = request.num_return_sequences
    return attributes


def response_attributes(request: GenerationRequest, outcome: GenerationOutcome) -> Attributes:
    """Finish reasons and exact token usage, counted from the tensors."""
    attributes: Attributes = {}
    if outcome.finish_reasons:
        attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] = list(outcome.finish_reasons)
        attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = outcome.output_tokens
    if request.input_tokens is not None:
        attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] = request.input_tokens
    return attributes


def report_attributes(report: rep.CaptureReport, max_points: int, primary: int = 0) -> Attributes:
    """Span attributes of a capture report.

    Summary statistics (mean / min / max) and per-layer aggregates are pooled over every step of
    every returned sequence; the downsampled series are those of sequence ``primary`` (each
    sequence's own are on its ``corevital.sequence`` event when there are several).
    """
    attributes: Attributes = {
        sc.COREVITAL_CAPTURE_LEVEL: report.capture_level,
        sc.COREVITAL_SEQUENCE_COUNT: len(report.sequences),
        sc.COREVITAL_STEPS: max((s.steps for s in report.sequences), default=0),
    }
    sequences = report.sequences
    if not sequences:
        return attributes
    names = [name for name in _SERIES_KEYS if name in sequences[0].series]
    if len(sequences) == 1:
        columns = [sequences[0].series[name] for name in names]
    else:
        columns = [pooled(s.series[name] for s in sequences) for name in names]
    attributes.update(_all_stats(names, columns))
    attributes.update(_layer_attributes(sequences, report.hidden_size))
    if 0 <= primary < len(sequences):
        attributes[sc.COREVITAL_SERIES_SEQUENCE_INDEX] = primary
        attributes.update(_series(sequences[primary], max_points))
    return attributes


def sequence_event_attributes(sequence: rep.SequenceReport, max_points: int) -> Attributes:
    """Attributes of the ``corevital.sequence`` event: one returned sequence's own read-out."""
    attributes: Attributes = {
        sc.COREVITAL_SEQUENCE_INDEX: sequence.index,
        sc.COREVITAL_SEQUENCE_OUTPUT_TOKENS: sequence.output_tokens,
        sc.COREVITAL_SEQUENCE_FINISH_REASON: sequence.finish_reason,
        sc.COREVITAL_STEPS: sequence.steps,
    }
    names = [name for name in _SERIES_KEYS if name in sequence.series]
    attributes.update(_all_stats(names, [sequence.series[name] for name in names]))
    attributes.update(_series(sequence, max_points))
    return attributes


def content_attributes(messages: Messages) -> Attributes:
    """Prompt and completion as GenAI messages (only called with content capture on)."""
    attributes: Attributes = {}
    if messages.input:
        attributes[sc.GEN_AI_INPUT_MESSAGES] = json.dumps(messages.input, ensure_ascii=False)
    if messages.output:
        attributes[sc.GEN_AI_OUTPUT_MESSAGES] = json.dumps(messages.output, ensure_ascii=False)
    return attributes


def _all_stats(names: list[str], columns: Sequence[np.ndarray]) -> Attributes:
    """Mean / min / max of the finite values of every series at once (a series without any is left
    out), one vectorised pass instead of one per series."""
    out: Attributes = {}
    if not names or not len(columns[0]):
        return out
    matrix = np.asarray(columns, dtype=np.float64)  # [series, steps]
    finite = np.isfinite(matrix)
    counts = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(finite, matrix, 0.0).sum(axis=1) / counts
    lows = np.where(finite, matrix, np.inf).min(axis=1)
    highs = np.where(finite, matrix, -np.inf).max(axis=1)
    for name, count, mean, low, high in zip(names, counts.tolist(), means.tolist(), lows.tolist(),
                                            highs.tolist(), strict=True):  # fmt: skip
        if count:
            mean_key, min_key, max_key, _ = _SERIES_KEYS[name]
            out[mean_key], out[min_key], out[max_key] = mean, low, high
    return out


def _series(sequence: rep.SequenceReport, max_points: int) -> Attributes:
    out: Attributes = {}
    stride = 1
    for name, keys in _SERIES_KEYS.items():
        values = sequence.series.get(name)
        if values is None:
            continue
        points, stride = downsample(values, max_points)
        defined = _defined_run(points)
        if defined:  # e.g. surprisal under beam search is undefined throughout
            out[keys[3]] = defined
    out[sc.COREVITAL_SERIES_STEP_STRIDE] = stride
    return out


def _defined_run(values: np.ndarray) -> list[float]:
    """The values from the first defined one up to (not including) the next undefined one, rounded
    to 6 decimals (smaller exports).

    >>> _defined_run(np.array([np.nan, 0.5, 0.25, np.nan, 1.0]))
    [0.5, 0.25]
    """
    finite = np.isfinite(values)
    if not finite.any():
        return []
    start = int(np.argmax(finite))
    stop = start + int(np.argmin(finite[start:])) if not finite[start:].all() else len(values)
    return [float(v) for v in np.round(values[start:stop], 6).tolist()]


def _layer_attributes(sequences: Sequence[rep.SequenceReport], hidden_size: int) -> Attributes:
    out: Attributes = {}
    for source, table in (("hidden_layers", _HIDDEN_LAYER_KEYS), ("attention_layers", _ATTENTION_LAYER_KEYS)):
        fields: dict[str, np.ndarray] = getattr(sequences[0], source)
        if not fields:
            continue
        for field, reduction, key, integer in table:
            per_step = pooled(getattr(s, source)[field] for s in sequences)
            if per_step.ndim != 2:
                continue
            values = layer_aggregate(per_step, reduction)
            if not np.isfinite(values).all():
                continue  # a layer without a defined value: left out rather than exported as NaN
            out[key] = [int(v) for v in values] if integer else np.round(values, 6).tolist()
    if sequences[0].hidden_layers:
        nan = pooled(s.hidden_layers["nan_count"] for s in sequences)
        inf = pooled(s.hidden_layers["inf_count"] for s in sequences)
        clipped = pooled(s.hidden_layers["clipped_count"] for s in sequences)
        out[sc.COREVITAL_HIDDEN_NAN_COUNT] = int(np.nansum(nan))
        out[sc.COREVITAL_HIDDEN_INF_COUNT] = int(np.nansum(inf))
        seen = clipped.size * max(hidden_size, 1)
        out[sc.COREVITAL_HIDDEN_CLIP_FRACTION] = float(np.nansum(clipped) / seen) if seen else 0.0
    return out
