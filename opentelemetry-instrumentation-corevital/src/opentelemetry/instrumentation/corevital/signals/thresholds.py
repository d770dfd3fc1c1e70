"""What the read-out judges one model's generations with, as plain values.

The model profile (``profiles.ModelProfile``, validated user input) hands the read-out a
:class:`Thresholds`: the numbers its detectors compare with, the healthy baseline of the model's
shape when there is one, and the fitted risk model. ``signals/`` reads only this, never the profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from .baseline import Baseline
from .risk import RiskModel


@dataclass(frozen=True)
class Thresholds:
    """The settings of the detectors, the baseline and the risk model (docs/signals.md).

    >>> Thresholds().high_entropy_threshold_bits
    4.0
    """

    high_entropy_threshold_bits: float = 4.0
    l2_explosion_multiplier: float = 8.0
    mid_layer_min_run: int = 3
    mid_layer_min_share: float = 0.25
    basin_score_baseline: float = 0.25
    repetition_ngram: int = 8
    repetition_similarity_threshold: float = 0.0
    early_warning: bool = False
    baseline: Baseline | None = None
    risk: RiskModel | None = None
