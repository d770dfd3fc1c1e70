"""The columns of the packed per-step tensor, by name.

Every decoding step is summarised into one ``[rows, width]`` float32 tensor so that a step costs one
``cat`` and the whole call one device -> host transfer. :class:`StepLayout` says which column holds
what, so that nothing reads the packed data by raw offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..signals.flags import nonfinite_steps
from ..summaries import ATTENTION_LAYER_FIELDS, HIDDEN_LAYER_FIELDS, LOGIT_FIELDS

_NAN_COUNT = HIDDEN_LAYER_FIELDS.index("nan_count")
_INF_COUNT = HIDDEN_LAYER_FIELDS.index("inf_count")


@dataclass(frozen=True)
class StepLayout:
    """Column layout of one packed step: logit fields, then per-layer hidden statistics and the two
    state similarities (when hidden states are captured), then per-layer attention statistics (when
    attention is captured).

    >>> layout = StepLayout(hidden_layers=2)
    >>> layout.logits, layout.hidden, layout.cosine_previous, layout.width
    (slice(0, 16, None), slice(16, 30, None), 30, 32)
    """

    hidden_layers: int = 0
    attention_layers: int = 0

    # -- logits ----------------------------------------------------------------------------------
    @property
    def logits(self) -> slice:
        """The raw logit summary (``summaries.LOGIT_FIELDS``; metrics via ``logit_metrics``)."""
        return slice(0, len(LOGIT_FIELDS))

    # -- hidden states ---------------------------------------------------------------------------
    @property
    def hidden(self) -> slice:
        """``hidden_layers × len(HIDDEN_LAYER_FIELDS)`` columns, layer-major."""
        start = len(LOGIT_FIELDS)
        return slice(start, start + self.hidden_layers * len(HIDDEN_LAYER_FIELDS))

    @property
    def cosine_previous(self) -> int:
        """Cosine of the last layer's state to the previous step's."""
        self._require_hidden()
        return self.hidden.stop

    @property
    def max_similarity(self) -> int:
        """Largest cosine of the last layer's state to any state two or more steps back."""
        self._require_hidden()
        return self.hidden.stop + 1

    # -- attention -------------------------------------------------------------------------------
    @property
    def attention(self) -> slice:
        """``attention_layers × len(ATTENTION_LAYER_FIELDS)`` columns, layer-major."""
        start = self.hidden.stop + (2 if self.hidden_layers else 0)
        return slice(start, start + self.attention_layers * len(ATTENTION_LAYER_FIELDS))

    @property
    def width(self) -> int:
        return self.attention.stop

    # -- reading host copies of packed steps ---------------------------------------------------
    def hidden_fields(self, data: np.ndarray) -> np.ndarray:
        """``[..., hidden_layers, len(HIDDEN_LAYER_FIELDS)]`` from ``[..., width]`` host rows."""
        return data[..., self.hidden].reshape(*data.shape[:-1], self.hidden_layers, len(HIDDEN_LAYER_FIELDS))

    def attention_fields(self, data: np.ndarray) -> np.ndarray:
        """``[..., attention_layers, len(ATTENTION_LAYER_FIELDS)]`` from ``[..., width]`` host rows."""
        shape = (*data.shape[:-1], self.attention_layers, len(ATTENTION_LAYER_FIELDS))
        return data[..., self.attention].reshape(shape)

    def nonfinite(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whether any layer's state held NaN, and whether any held ±Inf, per host row of
        ``[rows, width]`` (both all false without hidden-state columns), with the read-out's own
        reduction (``signals.flags.nonfinite_steps``).

        >>> layout = StepLayout(hidden_layers=2)
        >>> row = np.zeros((1, layout.width)); row[0, layout.hidden.start + 4] = 3.0  # layer 0 NaNs
        >>> layout.nonfinite(row)
        (array([ True]), array([False]))
        """
        if not self.hidden_layers:
            empty = np.zeros(data.shape[:-1], dtype=bool)
            return empty, empty.copy()
        hidden = self.hidden_fields(data)
        return nonfinite_steps(hidden[..., _NAN_COUNT]), nonfinite_steps(hidden[..., _INF_COUNT])

    def _require_hidden(self) -> None:
        if not self.hidden_layers:
            raise ValueError("this layout has no hidden-state columns")
