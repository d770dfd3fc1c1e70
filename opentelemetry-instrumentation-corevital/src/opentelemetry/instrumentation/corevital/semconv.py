"""Telemetry names emitted by CoreVital: the one module the code takes names from.

GenAI names come from the ``opentelemetry-semantic-conventions`` package; CoreVital's own names are
defined here until the semantic-convention registry (``semconv/``) generates this module.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes as _error

# --- GenAI (OpenTelemetry semantic conventions, development) ---------------------------------
GEN_AI_OPERATION_NAME: Final = _gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = _gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL: Final = _gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_MAX_TOKENS: Final = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TEMPERATURE: Final = _gen_ai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_TOP_P: Final = _gen_ai.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_TOP_K: Final = _gen_ai.GEN_AI_REQUEST_TOP_K
GEN_AI_REQUEST_SEED: Final = _gen_ai.GEN_AI_REQUEST_SEED
GEN_AI_REQUEST_CHOICE_COUNT: Final = _gen_ai.GEN_AI_REQUEST_CHOICE_COUNT
GEN_AI_RESPONSE_FINISH_REASONS: Final = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_USAGE_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_TOKEN_TYPE: Final = _gen_ai.GEN_AI_TOKEN_TYPE
GEN_AI_INPUT_MESSAGES: Final = _gen_ai.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES: Final = _gen_ai.GEN_AI_OUTPUT_MESSAGES
ERROR_TYPE: Final = _error.ERROR_TYPE

GEN_AI_OPERATION_TEXT_COMPLETION: Final = _gen_ai.GenAiOperationNameValues.TEXT_COMPLETION.value
GEN_AI_PROVIDER_HUGGINGFACE: Final = "huggingface"
GEN_AI_TOKEN_TYPE_INPUT: Final = _gen_ai.GenAiTokenTypeValues.INPUT.value
GEN_AI_TOKEN_TYPE_OUTPUT: Final = _gen_ai.GenAiTokenTypeValues.OUTPUT.value
FINISH_REASON_STOP: Final = "stop"
FINISH_REASON_LENGTH: Final = "length"

METRIC_GEN_AI_CLIENT_OPERATION_DURATION: Final = _gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION
METRIC_GEN_AI_CLIENT_TOKEN_USAGE: Final = _gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: Final = _gen_ai_metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
METRIC_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: Final = _gen_ai_metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN

# Explicit bucket boundaries the GenAI metric conventions advise.
BUCKETS_GEN_AI_CLIENT_OPERATION_DURATION: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
BUCKETS_GEN_AI_CLIENT_TOKEN_USAGE: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
BUCKETS_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
BUCKETS_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip

# --- CoreVital: capture ---------------------------------------------------------------------
COREVITAL_CAPTURE_LEVEL: Final = "corevital.capture.level"
COREVITAL_ERROR_TYPE: Final = "corevital.error.type"
COREVITAL_SEQUENCES: Final = "corevital.sequences"
COREVITAL_STEPS: Final = "corevital.steps"
COREVITAL_SEQUENCE_INDEX: Final = "corevital.sequence.index"
COREVITAL_SEQUENCE_OUTPUT_TOKENS: Final = "corevital.sequence.output_tokens"
COREVITAL_SEQUENCE_FINISH_REASON: Final = "corevital.sequence.finish_reason"
COREVITAL_SERIES_SEQUENCE_INDEX: Final = "corevital.series.sequence_index"
COREVITAL_SERIES_STEP_STRIDE: Final = "corevital.series.step_stride"

CAPTURE_LEVEL_LOGITS: Final = "logits"
CAPTURE_LEVEL_HIDDEN: Final = "hidden"
CAPTURE_LEVEL_ATTENTION: Final = "attention"

# --- CoreVital: per-step series (each has .mean/.min/.max and .series) ------------------------
COREVITAL_ENTROPY_MEAN: Final = "corevital.entropy.mean"
COREVITAL_ENTROPY_MIN: Final = "corevital.entropy.min"
COREVITAL_ENTROPY_MAX: Final = "corevital.entropy.max"
COREVITAL_ENTROPY_SERIES: Final = "corevital.entropy.series"
COREVITAL_MARGIN_MEAN: Final = "corevital.margin.mean"
COREVITAL_MARGIN_MIN: Final = "corevital.margin.min"
COREVITAL_MARGIN_MAX: Final = "corevital.margin.max"
COREVITAL_MARGIN_SERIES: Final = "corevital.margin.series"
COREVITAL_TOPK_MASS_MEAN: Final = "corevital.topk_mass.mean"
COREVITAL_TOPK_MASS_MIN: Final = "corevital.topk_mass.min"
COREVITAL_TOPK_MASS_MAX: Final = "corevital.topk_mass.max"
COREVITAL_TOPK_MASS_SERIES: Final = "corevital.topk_mass.series"
COREVITAL_TOP1_PROB_MEAN: Final = "corevital.top1_prob.mean"
COREVITAL_TOP1_PROB_MIN: Final = "corevital.top1_prob.min"
COREVITAL_TOP1_PROB_MAX: Final = "corevital.top1_prob.max"
COREVITAL_TOP1_PROB_SERIES: Final = "corevital.top1_prob.series"
COREVITAL_SURPRISAL_MEAN: Final = "corevital.surprisal.mean"
COREVITAL_SURPRISAL_MIN: Final = "corevital.surprisal.min"
COREVITAL_SURPRISAL_MAX: Final = "corevital.surprisal.max"
COREVITAL_SURPRISAL_SERIES: Final = "corevital.surprisal.series"
COREVITAL_HIDDEN_L2_NORM_MEAN: Final = "corevital.hidden.l2_norm.mean"
COREVITAL_HIDDEN_L2_NORM_MIN: Final = "corevital.hidden.l2_norm.min"
COREVITAL_HIDDEN_L2_NORM_MAX: Final = "corevital.hidden.l2_norm.max"
COREVITAL_HIDDEN_L2_NORM_SERIES: Final = "corevital.hidden.l2_norm.series"
COREVITAL_HIDDEN_COSINE_PREVIOUS_MEAN: Final = "corevital.hidden.cosine_previous.mean"
COREVITAL_HIDDEN_COSINE_PREVIOUS_MIN: Final = "corevital.hidden.cosine_previous.min"
COREVITAL_HIDDEN_COSINE_PREVIOUS_MAX: Final = "corevital.hidden.cosine_previous.max"
COREVITAL_HIDDEN_COSINE_PREVIOUS_SERIES: Final = "corevital.hidden.cosine_previous.series"
COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MEAN: Final = "corevital.attention.entropy_normalized.mean"
COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MIN: Final = "corevital.attention.entropy_normalized.min"
COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MAX: Final = "corevital.attention.entropy_normalized.max"
COREVITAL_ATTENTION_ENTROPY_NORMALIZED_SERIES: Final = "corevital.attention.entropy_normalized.series"
COREVITAL_ATTENTION_COLLAPSED_HEADS_MEAN: Final = "corevital.attention.collapsed_heads.mean"
COREVITAL_ATTENTION_COLLAPSED_HEADS_MIN: Final = "corevital.attention.collapsed_heads.min"
COREVITAL_ATTENTION_COLLAPSED_HEADS_MAX: Final = "corevital.attention.collapsed_heads.max"
COREVITAL_ATTENTION_COLLAPSED_HEADS_SERIES: Final = "corevital.attention.collapsed_heads.series"

# --- CoreVital: per-layer aggregates over steps (arrays indexed by layer) ---------------------
COREVITAL_HIDDEN_LAYER_L2_NORM_MEAN: Final = "corevital.hidden.layer.l2_norm_mean"
COREVITAL_HIDDEN_LAYER_L2_NORM_MAX: Final = "corevital.hidden.layer.l2_norm_max"
COREVITAL_HIDDEN_LAYER_STD_MEAN: Final = "corevital.hidden.layer.std_mean"
COREVITAL_HIDDEN_LAYER_MEAN_MEAN: Final = "corevital.hidden.layer.mean_mean"
COREVITAL_HIDDEN_LAYER_MAX_ABS: Final = "corevital.hidden.layer.max_abs"
COREVITAL_HIDDEN_LAYER_NAN_COUNT: Final = "corevital.hidden.layer.nan_count"
COREVITAL_HIDDEN_LAYER_INF_COUNT: Final = "corevital.hidden.layer.inf_count"
COREVITAL_HIDDEN_NAN_COUNT: Final = "corevital.hidden.nan_count"
COREVITAL_HIDDEN_INF_COUNT: Final = "corevital.hidden.inf_count"
COREVITAL_HIDDEN_CLIP_FRACTION: Final = "corevital.hidden.clip_fraction"
COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN: Final = "corevital.attention.layer.entropy_mean"
COREVITAL_ATTENTION_LAYER_ENTROPY_MIN: Final = "corevital.attention.layer.entropy_min"
COREVITAL_ATTENTION_LAYER_ENTROPY_MAX: Final = "corevital.attention.layer.entropy_max"
COREVITAL_ATTENTION_LAYER_ENTROPY_NORMALIZED_MEAN: Final = "corevital.attention.layer.entropy_normalized_mean"
COREVITAL_ATTENTION_LAYER_CONCENTRATION_MEAN: Final = "corevital.attention.layer.concentration_mean"
COREVITAL_ATTENTION_LAYER_COLLAPSED_HEADS_MEAN: Final = "corevital.attention.layer.collapsed_heads_mean"
COREVITAL_ATTENTION_LAYER_FOCUSED_HEADS_MEAN: Final = "corevital.attention.layer.focused_heads_mean"

# --- CoreVital: content (only with message content capture on) -------------------------------
COREVITAL_TOP_TOKEN_IDS: Final = "corevital.top_tokens.ids"

# --- CoreVital: events and metrics ----------------------------------------------------------
EVENT_COREVITAL_SEQUENCE: Final = "corevital.sequence"
METRIC_COREVITAL_STEP_ENTROPY: Final = "corevital.step.entropy"
BUCKETS_COREVITAL_STEP_ENTROPY: Final = (
    0.1,
    0.25,
    0.5,
    1.0,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    6.0,
    8.0,
    10.0,
    12.0,
    16.0,
)
