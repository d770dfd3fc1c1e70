"""Risk score (0–1) with the factors that explain it (docs/signals.md, "Risk score")."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import flags as fl
from ._util import finite, mean_or
from .compound import CompoundSignal
from .repetition import ngram_repeat_share
from .representation import StateProbe, state_mean, state_spread

LOW, MODERATE, HIGH = "low", "moderate", "high"

NAN_OR_INF = "nan_or_inf"
ELEVATED_ENTROPY = "elevated_entropy"
ENTROPY_RISING = "entropy_rising"
LOW_CONFIDENCE_MARGIN = "low_confidence_margin"
LOW_TOPK_MASS = "low_topk_mass"
ELEVATED_SURPRISAL = "elevated_surprisal"


def risk_band(score: float) -> str:
    """``low`` below 0.3, ``high`` above 0.7, ``moderate`` between.

    >>> risk_band(0.1), risk_band(0.5), risk_band(0.9)
    ('low', 'moderate', 'high')
    """
    if score < 0.3:
        return LOW
    return HIGH if score > 0.7 else MODERATE


@dataclass
class RiskAssessment:
    """The risk score of one sequence, its band and the factors that contributed, largest first;
    ``fitted``: from a fitted model, which reads no flag (only NaN/Inf set it, to 1.0)."""

    score: float
    factors: list[str] = field(default_factory=list)
    fitted: bool = False

    @property
    def band(self) -> str:
        return risk_band(self.score)


def heuristic_risk(
    health_flags: fl.HealthFlags,
    entropy: np.ndarray | Iterable[float],
    margin: np.ndarray | Iterable[float],
    topk_mass: np.ndarray | Iterable[float],
    surprisal: np.ndarray | Iterable[float],
    compound: Sequence[CompoundSignal] = (),
) -> RiskAssessment:
    """The original composite score (docs/signals.md, "Risk score"), used without a fitted model.

    NaN/Inf give 1.0. Otherwise the largest boolean floor (repetition 0.9, mid-layer anomaly 0.7,
    attention collapse its severity) plus each continuous term above its gate, plus each compound
    signal's severity, capped at 1. Factors are listed by contribution, largest first.
    """
    contributions: dict[str, float] = {}
    if fl.NAN in health_flags or fl.INF in health_flags:
        return RiskAssessment(1.0, [NAN_OR_INF])
    floors = {
        fl.REPETITION_LOOP: 0.9 if fl.REPETITION_LOOP in health_flags else 0.0,
        fl.MID_LAYER_ANOMALY: 0.7 if fl.MID_LAYER_ANOMALY in health_flags else 0.0,
        fl.ATTENTION_COLLAPSE: health_flags.attention_collapse_severity,
    }
    floor_name = max(floors, key=lambda k: floors[k])
    if floors[floor_name] > 0:
        contributions[floor_name] = floors[floor_name]
    mean_entropy = mean_or(entropy)
    terms = {
        ELEVATED_ENTROPY: (0.3 * min(1.0, mean_entropy / 8.0), 0.05),
        LOW_CONFIDENCE_MARGIN: (0.2 * max(0.0, 1.0 - 5.0 * mean_or(margin, 1.0)), 0.05),
        LOW_TOPK_MASS: (0.15 * max(0.0, 1.0 - mean_or(topk_mass, 1.0)), 0.03),
        ELEVATED_SURPRISAL: (min(0.1, mean_or(surprisal) / 10.0), 0.02),
    }
    values = finite(entropy)
    if values.size >= 6:
        third = values.size // 3
        first, last = float(values[:third].mean()), float(values[-third:].mean())
        if first > 0 and last > 1.3 * first:
            terms[ENTROPY_RISING] = (min(0.2, 0.1 * (last - first) / first), 0.0)
    for name, (term, gate) in terms.items():
        if term > gate:
            contributions[name] = term
    for signal in compound:
        contributions[f"compound:{signal.name}"] = signal.severity
    score = min(1.0, sum(contributions.values()))
    factors = sorted(contributions, key=lambda k: -contributions[k])
    return RiskAssessment(score, factors)


# -- the fitted risk model (docs/evaluation.md) -------------------------------------------------

#: Features of one sequence the fitted risk model reads, in order.
RISK_FEATURES: tuple[str, ...] = (
    "entropy_mean",
    "entropy_max",
    "surprisal_mean",
    "surprisal_max",
    "margin_mean",
    "top1_prob_mean",
    "output_tokens_log",
    "hit_token_limit",
    "similarity_max",
    "similarity_high_share",
    "ngram_repeat_share",
    "first_new_token_surprisal",
    "state_spread",
    "state_probe",
)

#: The hidden-state features (docs/signals.md, "Representation features"): computed at the
#: ``hidden`` level, read by a risk model only when it was fitted with them.
STATE_FEATURES: tuple[str, ...] = ("state_spread", "state_probe")
#: The features the shipped risk model is fitted on: every feature that raised the out-of-fold and
#: the leave-one-task-out AUROC on the development sets (docs/evaluation.md, "Features: with and
#: without"); the state features did not, so they are left out.
DEFAULT_RISK_FEATURES: tuple[str, ...] = tuple(f for f in RISK_FEATURES if f not in STATE_FEATURES)

#: What a feature that raises the risk says, as a risk factor name.
FEATURE_FACTORS = {
    "entropy_mean": ELEVATED_ENTROPY,
    "entropy_max": ELEVATED_ENTROPY,
    "surprisal_mean": ELEVATED_SURPRISAL,
    "surprisal_max": ELEVATED_SURPRISAL,
    "margin_mean": LOW_CONFIDENCE_MARGIN,
    "top1_prob_mean": LOW_CONFIDENCE_MARGIN,
    "output_tokens_log": "long_output",
    "hit_token_limit": "hit_token_limit",
    "similarity_max": "state_revisited",
    "similarity_high_share": "state_revisited",
    "ngram_repeat_share": "repeated_text",
    "first_new_token_surprisal": "uncertain_answer_start",
    "state_spread": "hidden_state_spread",
    "state_probe": "hidden_state_probe",
}
SIMILARITY_HIGH = 0.95


def first_new_token_surprisal(
    surprisal: np.ndarray | Iterable[float], tokens: Sequence[int], prompt_tokens: Sequence[int]
) -> float:
    """Surprisal of the first generated token that does not occur in the prompt: where the answer
    starts saying something new, after any words it repeats from the question ("The capital of
    France is" → "Paris"). NaN when every generated token occurs in the prompt, or without tokens.

    >>> first_new_token_surprisal([0.1, 0.2, 3.0], [5, 6, 9], [1, 5, 6])
    3.0
    """
    values = np.asarray(list(surprisal) if not isinstance(surprisal, np.ndarray) else surprisal, dtype=float)
    seen = set(prompt_tokens)
    for step, token in enumerate(tokens[: len(values)]):
        if token not in seen:
            value = float(values[step])
            return value if math.isfinite(value) else float("nan")
    return float("nan")


def risk_features(
    series: dict[str, np.ndarray],
    output_tokens: int,
    finish_reason: str,
    tokens: Sequence[int] = (),
    prompt_tokens: Sequence[int] = (),
    projection: np.ndarray | None = None,
    probe: StateProbe | None = None,
) -> np.ndarray:
    """The :data:`RISK_FEATURES` of one sequence (NaN where a feature is undefined).

    ``projection`` is the sequence's projected middle-layer states (``SequenceReport.state_projection``;
    ``None`` below the ``hidden`` level), ``probe`` the model's fitted probe when it applies to this
    model (else ``state_probe`` is undefined).
    """

    def stat(name: str, fn: str) -> float:
        values = finite(series.get(name, np.zeros(0)))
        if not values.size:
            return float("nan")
        return float(getattr(values, fn)())

    similarity = finite(series.get("hidden.max_similarity", np.zeros(0)))
    return np.array(
        [
            stat("entropy", "mean"),
            stat("entropy", "max"),
            stat("surprisal", "mean"),
            stat("surprisal", "max"),
            stat("margin", "mean"),
            stat("top1_prob", "mean"),
            float(np.log1p(output_tokens)),
            1.0 if finish_reason == "length" else 0.0,
            float(similarity.max()) if similarity.size else float("nan"),
            float((similarity > SIMILARITY_HIGH).mean()) if similarity.size else float("nan"),
            ngram_repeat_share(list(tokens)),
            first_new_token_surprisal(series.get("surprisal", np.zeros(0)), list(tokens), prompt_tokens),
            state_spread(projection),
            float(probe.logit(state_mean(projection, probe.dims))) if probe is not None else float("nan"),
        ]
    )


#: The failure rate a user is assumed to expect when they state none (docs/signals.md, "Risk score").
DEFAULT_EXPECTED_FAILURE_RATE = 0.2


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def prior_shift(training_failure_rate: float | None, expected_failure_rate: float | None) -> float:
    """What to add to a logit fitted where failures had ``training_failure_rate`` so that it is
    right where they have ``expected_failure_rate`` (the standard prior-shift correction:
    ``logit(q) − logit(p)``); 0 when either rate is unknown or outside (0, 1).

    >>> prior_shift(0.5, 0.5)
    0.0
    >>> round(prior_shift(0.5, 0.2), 4)
    -1.3863
    >>> prior_shift(None, 0.2)
    0.0
    """
    rates = (training_failure_rate, expected_failure_rate)
    if any(r is None or not 0.0 < r < 1.0 for r in rates):
        return 0.0
    p, q = float(training_failure_rate), float(expected_failure_rate)  # type: ignore[arg-type]
    return _logit(q) - _logit(p)


@dataclass(frozen=True)
class LogisticPart:
    """Logistic regression over standardised features: ``σ(w · (x − mean) / scale + b)``.

    ``training_failure_rate`` is the share of failures among the rows it was fitted on (``None``
    when unknown): the prior its intercept carries, which :meth:`predict` can shift to another.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    training_failure_rate: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LogisticPart:
        features = tuple(str(f) for f in data["features"])
        part = cls(
            features,
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["scale"]),
            tuple(float(v) for v in data["weights"]),
            float(data["intercept"]),
            None if data.get("training_failure_rate") is None else float(data["training_failure_rate"]),
        )
        if not len(part.mean) == len(part.scale) == len(part.weights) == len(features):
            raise ValueError("risk_model: features, mean, scale and weights must have the same length")
        unknown = set(features) - set(RISK_FEATURES)
        if unknown:
            raise ValueError(f"risk_model: unknown features {sorted(unknown)}")
        return part

    def to_mapping(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "features": list(self.features),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "intercept": round(float(self.intercept), 6),
        }
        if self.training_failure_rate is not None:
            data["training_failure_rate"] = round(float(self.training_failure_rate), 6)
        return data

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """``w_i · z_i`` per feature of this part (an undefined feature counts as average)."""
        x = np.asarray(features, dtype=np.float64)[..., [RISK_FEATURES.index(f) for f in self.features]]
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.where(np.isfinite(z), z, 0.0) * np.asarray(self.weights)

    def predict(self, features: np.ndarray, expected_failure_rate: float | None = None) -> np.ndarray:
        """Probability of failure; with ``expected_failure_rate``, for data where failures have that
        rate instead of the training rate (:func:`prior_shift`)."""
        logit = self.contributions(features).sum(axis=-1) + self.intercept
        logit = logit + prior_shift(self.training_failure_rate, expected_failure_rate)
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500))))


@dataclass(frozen=True)
class RiskModel:
    """The fitted risk score: two logistic regressions gated on the output length.

    Short outputs (at most ``split_output_tokens`` tokens: answers) and long ones (stories, code,
    loops) fail in different ways — a wrong short answer is uncertain, a loop is confidently
    repetitive — so each regime has its own weights. Fitted on labelled generations (the shipped one
    on the evaluation sets, see docs/evaluation.md; ``corevital calibrate --labels`` for yours) and
    stored in the model profile.
    """

    split_output_tokens: int
    short: LogisticPart
    long: LogisticPart
    probe: StateProbe | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RiskModel:
        probe = data.get("probe")
        return cls(
            int(data["split_output_tokens"]),
            LogisticPart.from_mapping(data["short"]),
            LogisticPart.from_mapping(data["long"]),
            StateProbe.from_mapping(probe) if probe else None,
        )

    def to_mapping(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "split_output_tokens": self.split_output_tokens,
            "short": self.short.to_mapping(),
            "long": self.long.to_mapping(),
        }
        if self.probe is not None:
            data["probe"] = self.probe.to_mapping()
        return data

    @property
    def reads_state(self) -> bool:
        """Whether either regime reads a hidden-state feature (:data:`STATE_FEATURES`)."""
        return any(f in STATE_FEATURES for f in (*self.short.features, *self.long.features))

    def probe_for(self, hidden_size: int, layers: int) -> StateProbe | None:
        """The probe, when it was fitted on a model of this shape."""
        return self.probe if self.probe is not None and self.probe.applies(hidden_size, layers) else None

    def part(self, features: np.ndarray) -> LogisticPart:
        """The regime of one feature row."""
        tokens = math.expm1(float(features[RISK_FEATURES.index("output_tokens_log")]))
        return self.short if tokens <= self.split_output_tokens + 0.5 else self.long

    def predict(self, features: np.ndarray, expected_failure_rate: float | None = None) -> np.ndarray | float:
        """Probability of a failed generation for one row or a ``[n, features]`` array.

        Without ``expected_failure_rate`` the probability is for data like the training data; with
        it, each regime's logit is shifted from its training failure rate to that rate.
        """
        x = np.asarray(features, dtype=np.float64)
        if x.shape[-1] != len(RISK_FEATURES):
            raise ValueError(
                f"risk rows need {len(RISK_FEATURES)} features (signals.risk.RISK_FEATURES); got "
                f"{x.shape[-1]} columns (rows that end with the mean projected state: fitting.scored_rows)"
            )
        if x.ndim == 1:
            return float(self.part(x).predict(x, expected_failure_rate))
        return np.array([float(self.part(row).predict(row, expected_failure_rate)) for row in x])


def model_risk(
    model: RiskModel,
    features: np.ndarray,
    health_flags: fl.HealthFlags,
    compound: Sequence[CompoundSignal] = (),
    expected_failure_rate: float | None = DEFAULT_EXPECTED_FAILURE_RATE,
) -> RiskAssessment:
    """The fitted model's score (1.0 on NaN/Inf, which leave nothing to judge), and its factors:
    the features that raised the score most (by ``w · z``), then the health flags and compound
    signals that fired, so that the list keeps explaining the score.

    The score is for traffic where ``expected_failure_rate`` of the generations fail (the prior
    shift of :func:`prior_shift`; ``None``: the training data's rate); the band is read from it."""
    if fl.NAN in health_flags or fl.INF in health_flags:
        return RiskAssessment(1.0, [NAN_OR_INF])
    score = float(model.predict(features, expected_failure_rate))
    factors: list[str] = []
    part = model.part(np.asarray(features, dtype=np.float64))
    contributions = part.contributions(features)
    for index in np.argsort(-contributions):
        if contributions[index] <= 0.25:
            break
        name = FEATURE_FACTORS.get(part.features[index], part.features[index])
        if name not in factors:
            factors.append(name)
    for name in (fl.REPETITION_LOOP, fl.MID_LAYER_ANOMALY, fl.ATTENTION_COLLAPSE):
        if name in health_flags and name not in factors:
            factors.append(name)
    factors += [f"compound:{c.name}" for c in compound]
    return RiskAssessment(score, factors, fitted=True)
