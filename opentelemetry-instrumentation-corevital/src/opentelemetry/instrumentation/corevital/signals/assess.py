"""The health read-out: a capture report in, one health report out.

:func:`assess_report` is the one place that turns what the capture saw into conclusions: per returned
sequence the flags, risk, blame, compound signals, early warning, fingerprint, narrative and
calibration divergence (:func:`assess`), and which sequence is the worst — chosen here, once, for the
span, the metrics and the application alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import report as rep
from ..report import EARLY_WARNING, HEALTH_FLAG, Firing
from . import flags as fl
from ._util import nanmean
from .baseline import Baseline
from .blame import LayerBlame, layer_blame
from .calibration import CalibrationProfile, Divergence, divergence
from .compound import CompoundSignal, compound_signals
from .early_warning import EarlyWarning, early_warning
from .fingerprint import fingerprint
from .narrative import narrative
from .risk import (
    DEFAULT_EXPECTED_FAILURE_RATE,
    RiskAssessment,
    heuristic_risk,
    model_risk,
    risk_features,
)
from .thresholds import Thresholds


@dataclass
class SequenceHealth:
    """Everything CoreVital concludes about one returned sequence.

    ``features`` are the risk model's inputs, in the order of ``signals.risk.RISK_FEATURES`` (NaN
    where one is undefined or not computed: the hidden-state features are computed only for a risk
    model that reads them, which the shipped one does not): what the risk score read, for a user
    who wants to log or refit it.
    """

    index: int
    flags: fl.HealthFlags
    risk: RiskAssessment
    blame: list[LayerBlame] = field(default_factory=list)
    compound: list[CompoundSignal] = field(default_factory=list)
    early_warning: EarlyWarning = field(default_factory=EarlyWarning)
    fingerprint: list[float] = field(default_factory=list)
    narrative: str = ""
    divergence: Divergence | None = None
    firings: list[Firing] = field(default_factory=list)
    features: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def flag_names(self) -> list[str]:
        """The health flags this sequence raised, in reporting order."""
        return self.flags.names

    @property
    def blamed_layers(self) -> list[int]:
        """The blamed layers, most severe first."""
        return [b.layer for b in self.blame]


@dataclass
class HealthReport:
    """CoreVital's conclusions about one ``generate()`` call: this is what the span carries and what
    ``health_reports()`` hands to the application.

    Attributes:
        sequences: the read-out of every returned sequence, in the order ``generate`` returned them.
        worst: the position in ``sequences`` of the sequence the span describes (highest risk, then
            highest failure risk, then first).
        capture: the per-step series and statistics the read-out was computed from.
        baseline: the model's healthy baseline the read-out judged against (``None``: the model
            profile has none for this model's shape).
        model: the model name as on the span (``gen_ai.request.model``).
        trace_id, span_id: the span that carries this report, as hex strings (empty when the span
            is not recorded).
    """

    sequences: list[SequenceHealth]
    worst: int
    capture: rep.CaptureReport
    baseline: Baseline | None = None
    model: str = ""
    trace_id: str = ""
    span_id: str = ""

    @property
    def primary(self) -> SequenceHealth:
        """The read-out of the worst sequence."""
        return self.sequences[self.worst]

    @property
    def risk_score(self) -> float:
        """Risk of the worst sequence, 0–1."""
        return self.primary.risk.score

    @property
    def risk_band(self) -> str:
        """``low``, ``moderate`` or ``high``."""
        return self.primary.risk.band

    @property
    def risk_factors(self) -> list[str]:
        return list(self.primary.risk.factors)

    @property
    def flags(self) -> list[str]:
        """Health flags raised by the worst sequence."""
        return self.primary.flag_names

    @property
    def blamed_layers(self) -> list[int]:
        return self.primary.blamed_layers

    @property
    def narrative(self) -> str:
        return self.primary.narrative

    @property
    def interventions(self) -> list[rep.Intervention]:
        """The sequences CoreVital stopped (``stop_on``)."""
        return self.capture.interventions


def worst_sequence(sequences: Sequence[SequenceHealth]) -> int:
    """Position of the sequence with the highest risk, then the highest failure risk, then the first.

    >>> from .flags import HealthFlags
    >>> a = SequenceHealth(0, HealthFlags(), RiskAssessment(0.2))
    >>> b = SequenceHealth(1, HealthFlags(), RiskAssessment(0.9))
    >>> worst_sequence([a, b])
    1
    """
    return max(
        range(len(sequences)),
        key=lambda i: (sequences[i].risk.score, sequences[i].early_warning.failure_risk, -i),
    )


def assess_report(
    report: rep.CaptureReport,
    thresholds: Thresholds,
    *,
    calibration: CalibrationProfile | None = None,
    token_text: Callable[[int, int], str] | None = None,
    expected_failure_rate: float | None = DEFAULT_EXPECTED_FAILURE_RATE,
    model: str = "",
    trace_id: str = "",
    span_id: str = "",
) -> HealthReport | None:
    """The health report of one call; ``None`` when no sequence was summarised.

    Args:
        report: the capture report of the call.
        thresholds: the model profile's thresholds, baseline and risk model (``ModelProfile.thresholds``).
        calibration: a healthy-run profile; gives each sequence a divergence score.
        token_text: ``token_text(sequence_index, step)`` names a generated token (content capture
            only; without it no token text appears in the narrative).
        expected_failure_rate: the share of failed generations the user expects; the fitted risk
            score is shifted to it (``None``: the training data's share).
        model, trace_id, span_id: the model name and the span the report belongs to.
    """
    if not report.sequences:
        return None
    sequences = [
        assess(
            sequence,
            thresholds,
            sequence.firings,
            attention_heads=report.attention_heads,
            hidden_size=report.hidden_size,
            calibration=calibration,
            token_text=functools.partial(token_text, sequence.index) if token_text is not None else None,
            streamed=sequence.streamed,
            tokens=sequence.tokens,
            expected_failure_rate=expected_failure_rate,
        )
        for sequence in report.sequences
    ]
    return HealthReport(
        sequences, worst_sequence(sequences), report, thresholds.baseline, model, trace_id, span_id
    )


def _layer_field(fields: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    values = fields.get(name)
    return None if values is None or values.ndim != 2 else values


def _nonfinite(hidden: dict[str, np.ndarray]) -> np.ndarray | None:
    """``[steps, layers]`` NaN + Inf counts, when hidden states were captured."""
    return hidden["nan_count"] + hidden["inf_count"] if "nan_count" in hidden else None


def health_flags(
    sequence: rep.SequenceReport, thresholds: Thresholds, firings: Sequence[Firing], attention_heads: int = 0
) -> fl.HealthFlags:
    """Flags from the streaming firings (NaN, Inf, repetition) and from the whole series."""
    result = fl.HealthFlags()
    for firing in firings:
        if firing.kind == HEALTH_FLAG:
            result.fired.setdefault(firing.name, firing.step)
    hidden = sequence.hidden_layers
    entropy = sequence.series.get(rep.SERIES_ENTROPY, np.zeros(0))
    nan_steps = np.isnan(entropy)
    if "nan_count" in hidden:
        nan_steps = nan_steps | fl.nonfinite_steps(hidden["nan_count"])
    step = fl.first_step(nan_steps)
    if step is not None:
        result.fired[fl.NAN] = min(step, result.fired.get(fl.NAN, step))
    if "inf_count" in hidden:
        step = fl.first_step(fl.nonfinite_steps(hidden["inf_count"]))
        if step is not None:
            result.fired[fl.INF] = min(step, result.fired.get(fl.INF, step))
    high = fl.high_entropy_steps(entropy, thresholds.high_entropy_threshold_bits)
    result.high_entropy_steps = int(high.sum())
    result.high_entropy_threshold_bits = thresholds.high_entropy_threshold_bits
    # "high" means unusual for this model: only judged against its healthy baseline
    step = fl.high_entropy_flag_step(high) if thresholds.baseline is not None else None
    if step is not None:
        result.fired[fl.HIGH_ENTROPY] = step
    collapsed = _layer_field(sequence.attention_layers, "collapsed_heads")
    if collapsed is not None and attention_heads > 0:
        rate = np.nansum(collapsed, axis=1) / (collapsed.shape[1] * attention_heads)
        severity, step = fl.attention_collapse(rate)
        if step is not None:
            result.fired[fl.ATTENTION_COLLAPSE] = step
            result.attention_collapse_severity = severity
    l2 = _layer_field(hidden, "l2_norm")
    if l2 is not None:
        anomalous = fl.mid_layer_anomaly_steps(l2, _nonfinite(hidden), thresholds.l2_explosion_multiplier)
        step = fl.persistent(anomalous, thresholds.mid_layer_min_run, thresholds.mid_layer_min_share)
        if step is not None:
            result.fired[fl.MID_LAYER_ANOMALY] = step
    return result


def assess(
    sequence: rep.SequenceReport,
    thresholds: Thresholds,
    firings: Sequence[Firing] = (),
    *,
    attention_heads: int = 0,
    hidden_size: int = 0,
    calibration: CalibrationProfile | None = None,
    token_text: Callable[[int], str] | None = None,
    streamed: bool = False,
    tokens: Sequence[int] = (),
    expected_failure_rate: float | None = DEFAULT_EXPECTED_FAILURE_RATE,
) -> SequenceHealth:
    """The health read-out of one sequence.

    Args:
        sequence: the sequence's per-step series and per-layer statistics.
        thresholds: the model profile's thresholds (``ModelProfile.thresholds``).
        firings: what the streaming detectors reported for this sequence during generation.
        attention_heads: heads per layer (for the collapse rate), 0 without attention capture.
        hidden_size: width of the hidden states (whether the risk model's probe applies), 0 when
            they are not captured.
        calibration: a healthy-run profile; gives the divergence score when present.
        token_text: names the token of a step (only with content capture on).
        tokens: the sequence's generated token ids (for the repeated-text risk feature).
        streamed: the firings come from a streaming monitor that ran the early-warning detectors
            (otherwise they are run here over the whole series).
        expected_failure_rate: the share of failed generations the user expects (the fitted risk
            score's prior; ``None``: the training data's share).
    """
    series = sequence.series
    empty = np.zeros(0)
    entropy = series.get(rep.SERIES_ENTROPY, empty)
    margin = series.get(rep.SERIES_MARGIN, empty)
    surprisal = series.get(rep.SERIES_SURPRISAL, empty)
    topk_mass = series.get(rep.SERIES_TOPK_MASS, empty)
    flags = health_flags(sequence, thresholds, firings, attention_heads)
    collapsed = _layer_field(sequence.attention_layers, "collapsed_heads")
    share = None
    if collapsed is not None and attention_heads > 0 and collapsed.size:
        share = float(np.nansum(collapsed) / (collapsed.size * attention_heads))
    basin = _layer_field(sequence.attention_layers, "basin_score")
    basin_per_step = None
    if basin is not None:
        basin_per_step = nanmean(basin, axis=1)  # steps with fewer than 3 keys are NaN
    compound = compound_signals(
        entropy,
        margin,
        surprisal,
        topk_mass,
        high_entropy_threshold_bits=thresholds.high_entropy_threshold_bits,
        basin_score=basin_per_step,
        basin_score_baseline=thresholds.basin_score_baseline,
        collapsed_head_share=share,
        repetition_evidence=fl.REPETITION_LOOP in flags,
    )
    layer_l2 = _layer_field(sequence.hidden_layers, "l2_norm")
    layer_count = int(layer_l2.shape[1]) if layer_l2 is not None and layer_l2.ndim == 2 else 0
    # the hidden-state features cost a small eigen-solve per call: computed only for a risk model
    # that reads them (undefined otherwise; SequenceReport.state_projection has their input)
    reads_state = thresholds.risk is not None and thresholds.risk.reads_state
    probe = (
        thresholds.risk.probe_for(hidden_size, layer_count)
        if thresholds.risk is not None and reads_state
        else None
    )
    features = risk_features(
        series,
        sequence.output_tokens,
        sequence.finish_reason,
        tokens,
        sequence.prompt_tokens,
        sequence.state_projection if reads_state else None,
        probe,
    )
    if thresholds.risk is not None:
        risk = model_risk(thresholds.risk, features, flags, compound, expected_failure_rate)
    else:
        risk = heuristic_risk(flags, entropy, margin, topk_mass, surprisal, compound)
    hidden = sequence.hidden_layers
    l2 = _layer_field(hidden, "l2_norm")
    exploded = None
    if l2 is not None and fl.MID_LAYER_ANOMALY in flags:
        exploded = fl.mid_layer_anomalies(l2, _nonfinite(hidden), thresholds.l2_explosion_multiplier)
    blamed = layer_blame(l2, _nonfinite(hidden), collapsed, exploded, thresholds.baseline)
    # The streaming monitor already ran the detectors step by step; without one, scan the series
    # (unless the profile turns the detectors off: then only the flags pass through).
    already: dict[str, int] | None = None
    if streamed or not thresholds.early_warning:
        already = {f.name: f.step for f in firings if f.kind == EARLY_WARNING}
    warning = early_warning(entropy, margin, surprisal, thresholds.high_entropy_threshold_bits, already)
    all_firings = list(firings)
    reported = {f.name for f in firings}
    for name, step in flags.fired.items():
        if name not in reported:
            all_firings.append(Firing(HEALTH_FLAG, name, step, {}, 0))
    divergence_result = None
    if calibration is not None:
        layers = {"hidden.l2_norm": hidden["l2_norm"]} if "l2_norm" in hidden else {}
        divergence_result = divergence(calibration, series, layers)
    return SequenceHealth(
        index=sequence.index,
        flags=flags,
        risk=risk,
        blame=blamed,
        compound=compound,
        early_warning=warning,
        fingerprint=fingerprint(entropy, margin, surprisal, topk_mass, risk.score, flags),
        narrative=narrative(risk, flags, entropy, compound, blamed, token_text),
        divergence=divergence_result,
        firings=sorted(all_firings, key=lambda f: (f.step, f.name)),
        features=features,
    )
