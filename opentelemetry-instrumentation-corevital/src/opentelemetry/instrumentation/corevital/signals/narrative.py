"""A short, deterministic narrative of one sequence's health (docs/signals.md, "Narrative")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from . import flags as fl
from ._util import as_array, finite
from .blame import LayerBlame
from .compound import CompoundSignal
from .risk import HIGH, RiskAssessment

_RECOMMENDATIONS = {
    fl.REPETITION_LOOP: "Consider a repetition penalty, a lower temperature or a shorter token limit.",
    fl.MID_LAYER_ANOMALY: "Check the inputs and the numerical precision (dtype, quantisation) of the model.",
    fl.NAN: "Check the inputs and the numerical precision (dtype, quantisation) of the model.",
    fl.INF: "Check the inputs and the numerical precision (dtype, quantisation) of the model.",
}
_ENTROPY_ADVICE = "Clarify the prompt, or try a model that knows the domain better."


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _layers_stand_out(layers: Sequence[int]) -> str:
    """The subject and verb agree with the number of layers.

    >>> _layers_stand_out([28])
    'Layer 28 stands out'
    >>> _layers_stand_out([2, 3, 4])
    'Layers 2, 3 and 4 stand out'
    """
    if len(layers) == 1:
        return f"Layer {layers[0]} stands out"
    return f"Layers {_join([str(layer) for layer in layers])} stand out"


#: The kinds of sentence a narrative is made of, in the order they appear.
RISK, PEAK_ENTROPY, ENTROPY_TREND, FLAGS, COMPOUND, LAYERS, ADVICE = (
    "risk", "peak_entropy", "entropy_trend", "flags", "compound", "layers", "advice"
)  # fmt: skip
SENTENCE_KINDS: tuple[str, ...] = (RISK, PEAK_ENTROPY, ENTROPY_TREND, FLAGS, COMPOUND, LAYERS, ADVICE)


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
    if risk.factors:
        sentences.append((RISK, f"Risk is {risk.band} ({risk.score:.2f}), mainly from {risk.factors[0]}."))
    else:
        sentences.append((RISK, f"Risk is {risk.band} ({risk.score:.2f}); no factor contributed."))
    values = as_array(entropy)
    kept = finite(values)
    if kept.size:
        peak_step = int(np.nanargmax(np.where(np.isfinite(values), values, -np.inf)))
        peak = f"Entropy peaked at {values[peak_step]:.2f} bits at step {peak_step}"
        if token_text is not None:
            peak += f" (token {token_text(peak_step)!r})"
        sentences.append((PEAK_ENTROPY, peak + "."))
        if kept.size >= 6:
            third = kept.size // 3
            first, last = float(kept[:third].mean()), float(kept[-third:].mean())
            if first > 0 and last > 1.3 * first:
                sentences.append(
                    (ENTROPY_TREND, f"Entropy rose from {first:.2f} to {last:.2f} bits over the generation.")
                )
    else:
        sentences.append((PEAK_ENTROPY, "No decoding step was summarised."))
    if health_flags.names:
        sentences.append((FLAGS, f"Health flags: {_join(health_flags.names)}."))
    for signal in list(compound)[:2]:
        sentences.append((COMPOUND, f"Compound signal {signal.name} (severity {signal.severity:.2f})."))
    if blamed:
        sentences.append(
            (LAYERS, f"{_layers_stand_out([b.layer for b in blamed[:3]])} ({blamed[0].reasons[0]}).")
        )
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
