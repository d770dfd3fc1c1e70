"""Risk scores of items by models that never saw them: out-of-fold, leave-one-task-out, and the
model fitted on every development item scoring a panel it was not fitted on.

Each score is kept as the probability at the training data's failure rate together with that rate
(of the regime that scored the item), so that it can be read at any expected failure rate
afterwards with the same prior shift the instrumentation applies (``signals.risk.prior_shift``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from opentelemetry.instrumentation.corevital.fitting import fit_risk_model, scored_rows
from opentelemetry.instrumentation.corevital.signals.risk import DEFAULT_RISK_FEATURES, RiskModel

#: ``(hidden size, decoder layers)`` of the model the cached generations come from, set by
#: ``evaluate.load``: rows carry the mean projected state after the features, and every fit fits the
#: state probe too (``None``: no probe).
PROBE_SHAPE: tuple[int, int] | None = None


def fit(x: np.ndarray, y: np.ndarray, use: tuple[str, ...] = DEFAULT_RISK_FEATURES) -> RiskModel:
    """The evaluated pipeline: the risk model on the features ``use`` names (the shipped ones by
    default), with the state probe when ``state_probe`` is among them (:data:`PROBE_SHAPE`)."""
    return fit_risk_model(x, y, probe_shape=PROBE_SHAPE, use=use)


@dataclass
class HeldOut:
    """Scores of some items by models fitted without them.

    Attributes:
        raw: probability of failure at the training data's failure rate (NaN: not scored).
        rate: the training failure rate of the regime that scored each item.
    """

    raw: np.ndarray
    rate: np.ndarray

    def at(self, expected_failure_rate: float | np.ndarray | None) -> np.ndarray:
        """The scores shifted to ``expected_failure_rate`` (per item or one for all); ``None``:
        as fitted."""
        if expected_failure_rate is None:
            return self.raw.copy()
        p = np.clip(self.raw, 1e-12, 1 - 1e-12)
        q = np.clip(np.asarray(expected_failure_rate, dtype=float), 1e-6, 1 - 1e-6)
        logit = np.log(p / (1 - p)) + np.log(q / (1 - q)) - np.log(self.rate / (1 - self.rate))
        return np.asarray(1.0 / (1.0 + np.exp(-logit)))

    def subset(self, index: Sequence[int] | np.ndarray) -> HeldOut:
        return HeldOut(self.raw[index], self.rate[index])


def score(model: RiskModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(raw probability, training rate of the scoring regime)`` per row of ``x`` (features, then
    the mean projected state, which the model's probe scores)."""
    x = scored_rows(model, x)
    raw, rate = np.zeros(len(x)), np.zeros(len(x))
    for k, row in enumerate(x):
        part = model.part(row)
        raw[k] = float(part.predict(row))
        rate[k] = part.training_failure_rate if part.training_failure_rate is not None else 0.5
    return raw, rate


def held_out(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fit: Callable[[np.ndarray, np.ndarray], RiskModel] | None = None,
    score_groups: Sequence[Any] | None = None,
    train_mask: np.ndarray | None = None,
) -> HeldOut:
    """For every group ``g`` (a fold, or a task), fit on the rows of the other groups and score the
    rows of ``g``. ``score_groups`` limits which groups are held out (others stay NaN);
    ``train_mask`` limits which rows may ever be trained on."""
    fit = fit or globals()["fit"]
    allowed = np.ones(len(y), dtype=bool) if train_mask is None else train_mask
    raw, rate = np.full(len(y), np.nan), np.full(len(y), np.nan)
    for group in score_groups if score_groups is not None else np.unique(groups):
        test = groups == group
        train = allowed & ~test
        model = fit(x[train], y[train])
        raw[test], rate[test] = score(model, x[test])
    return HeldOut(raw, rate)
