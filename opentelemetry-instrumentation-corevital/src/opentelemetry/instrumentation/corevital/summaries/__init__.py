"""Pure torch: one decoding step's tensors -> a few small summary tensors.

Every function here runs on the tensors' own device, vectorised over the batch (and over layers and
heads where it applies), and returns float32 tensors shaped ``[batch, ...]``. Nothing here knows
about OpenTelemetry or keeps state between steps.
"""

from .attention import (
    ATTENTION_LAYER_FIELDS,
    last_query_weights,
    summarize_attention,
    summarize_attention_rows,
    summarize_layer_rows,
)
from .hidden import HIDDEN_LAYER_FIELDS, last_position_layers, summarize_hidden
from .logits import (
    LOGIT_FIELDS,
    TOP_K_MASS,
    TOP_N_PROBS,
    chosen_probability,
    logit_metrics,
    summarize_logits,
    surprisal_bits,
)

__all__ = [
    "ATTENTION_LAYER_FIELDS",
    "HIDDEN_LAYER_FIELDS",
    "LOGIT_FIELDS",
    "TOP_K_MASS",
    "TOP_N_PROBS",
    "chosen_probability",
    "last_position_layers",
    "last_query_weights",
    "logit_metrics",
    "summarize_attention",
    "summarize_attention_rows",
    "summarize_hidden",
    "summarize_layer_rows",
    "summarize_logits",
    "surprisal_bits",
]
