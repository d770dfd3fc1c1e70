"""A short, deterministic narrative of one sequence's health (docs/signals.md, "Narrative")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from . import flags as fl
from ._util import as_array, finite
from .blame import LayerBlame, describe
from .compound import CompoundSignal
from .risk import HIGH, RiskAssessment

_RECOMMENDATIONS = {
    fl.REPETITION_LOOP: "Consider a repetition penalty, a lower temperature or a shorter token limit.",
    fl.MID_LAYER_ANOMALY: "Check the inputs and the numerical precision (dtype, quantisation) of the model.",
    fl.NAN: "Check the inputs and the numerical precision (dtype, quantisation) of the model.",
    fl.INF: "Check the inputs and the numerical precision (dtype, quantisation) of the model.",
}
_ENTROPY_ADVICE = "Clarify the prompt, or try a model that knows the domain better."


def format_risk(score: float) -> str:
    """A risk score as text that never reads as zero when it is not: two decimals, three below
    0.01, ``<0.001`` below that.

    >>> format_risk(0.4567), format_risk(0.0042), format_risk(0.00002), format_risk(0.0)
    ('0.46', '0.004', '<0.001', '0.00')
    """
    if 0.0 < score < 0.001:
        return "<0.001"
    return f"{score:.3f}" if 0.0 < score < 0.01 else f"{score:.2f}"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


#: The kinds of sentence a narrative is made of, in the order they appear. (A sentence on the entropy
#: trend — "rose from 1.2 to 2.0 bits" — was dropped: on SmolLM2 it came with 31–40% of correct
#: answers and 41% of wrong ones, so it told a reader nothing; docs/evaluation.md.)
RISK, PEAK_ENTROPY, FLAGS, COMPOUND, LAYERS, ADVICE = (
    "risk", "peak_entropy", "flags", "compound", "layers", "advice"
)  # fmt: skip
SENTENCE_KINDS: tuple[str, ...] = (RISK, PEAK_ENTROPY, FLAGS, COMPOUND, LAYERS, ADVICE)


def narrative_sentences(
    risk: RiskAssessment,
    health_flags: fl.HealthFlags,
    entropy: np.ndarray | Iterable[float],
    compound: Sequence[CompoundSignal] = (),
    blamed: Sequence[LayerBlame] = (),
    token_text: Callable[[int], str] | None = None,
) -> list[tuple[str, str]]:
    """The narrative's sentences, each with its kind (:data:`SENTENCE_KINDS`), at most six.

    ``token_text(step)`` names the token generated at a step; pass it only when message content
    may be recorded (content capture on), otherwise no token text appears.
    """
    sentences: list[tuple[str, str]] = []
    score = format_risk(risk.score)
    if risk.factors:
        sentences.append((RISK, f"Risk is {risk.band} ({score}), mainly from {risk.factors[0]}."))
    else:
        sentences.append((RISK, f"Risk is {risk.band} ({score}); no factor contributed."))
    values = as_array(entropy)
    kept = finite(values)
    if kept.size:
        peak_step = int(np.nanargmax(np.where(np.isfinite(values), values, -np.inf)))
        peak = f"Entropy peaked at {values[peak_step]:.2f} bits at step {peak_step}"
        if token_text is not None:
            peak += f" (token {token_text(peak_step)!r})"
        sentences.append((PEAK_ENTROPY, peak + "."))
    else:
        sentences.append((PEAK_ENTROPY, "No decoding step was summarised."))
    if health_flags.names:
        text = f"Health flags: {_join(health_flags.names)}"
        if risk.fitted and risk.band != HIGH and not {fl.NAN, fl.INF} & set(health_flags.names):
            text += " (the fitted risk score reads the generation's statistics, not the flags)"
        sentences.append((FLAGS, text + "."))
    for signal in list(compound)[:2]:
        sentences.append((COMPOUND, f"Compound signal {signal.name} (severity {signal.severity:.2f})."))
    if blamed:
        sentences.append((LAYERS, f"Blamed layers: {describe(blamed)}."))
    if risk.band == HIGH:
        advice = next(
            (_RECOMMENDATIONS[n] for n in health_flags.names if n in _RECOMMENDATIONS), _ENTROPY_ADVICE
        )
        sentences.append((ADVICE, advice))
    return sentences[:6]


def narrative(
    risk: RiskAssessment,
    health_flags: fl.HealthFlags,
    entropy: np.ndarray | Iterable[float],
    compound: Sequence[CompoundSignal] = (),
    blamed: Sequence[LayerBlame] = (),
    token_text: Callable[[int], str] | None = None,
) -> str:
    """Two to six sentences built from the data, never from free text (:func:`narrative_sentences`)."""
    return " ".join(
        text for _, text in narrative_sentences(risk, health_flags, entropy, compound, blamed, token_text)
    )
