"""signals/: every health signal over hand-made series (empty, one step, NaN, long, batch rows)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from opentelemetry.instrumentation.corevital import report as rep
from opentelemetry.instrumentation.corevital.profiles import ModelProfile, load_calibration
from opentelemetry.instrumentation.corevital.signals import (
    baseline,
    blame,
    compound,
    early_warning,
    flags,
    risk,
)
from opentelemetry.instrumentation.corevital.signals.assess import assess
from opentelemetry.instrumentation.corevital.signals.calibration import (
    Distribution,
    ProfileBuilder,
    divergence,
)
from opentelemetry.instrumentation.corevital.signals.fingerprint import (
    FINGERPRINT_LENGTH,
    fingerprint,
    prompt_hash,
)
from opentelemetry.instrumentation.corevital.signals.narrative import narrative
from opentelemetry.instrumentation.corevital.signals.repetition import (
    RepetitionDetector,
    first_repeated_ngram,
)
from opentelemetry.instrumentation.corevital.signals.streaming import (
    EARLY_WARNING,
    HEALTH_FLAG,
    SequenceMonitor,
)

NAN = math.nan
EMPTY: list[float] = []


# -- flags -------------------------------------------------------------------------------------
def test_attention_collapse_catastrophe_and_trend() -> None:
    assert flags.attention_collapse([0.9] * 3) == (0.8, 0)
    assert flags.attention_collapse([0.0] * 6 + [0.2]) == (0.2, 6)
    assert flags.attention_collapse([0.0] * 6 + [0.5]) == (0.4, 6)
    assert flags.attention_collapse([0.1] * 10) == (0.0, None)


@pytest.mark.parametrize("series", [EMPTY, [NAN], [0.2], [0.0, 0.9, 0.0]])
def test_attention_collapse_short_or_empty(series) -> None:
    assert flags.attention_collapse(series) == (0.0, None)


def test_high_entropy_steps_ignores_nan() -> None:
    assert flags.high_entropy_steps([1.0, 5.0, NAN, 6.0], 4.0).tolist() == [False, True, False, True]
    assert flags.high_entropy_steps(EMPTY, 4.0).size == 0


def test_mid_layer_anomaly_compares_each_step_with_itself() -> None:
    norms = np.ones((4, 6))
    norms[2, 2] = 9.0  # a middle layer (2 of 6) at step 2
    assert flags.mid_layer_anomaly_steps(norms, None, 8.0).tolist() == [False, False, True, False]
    nonfinite = np.zeros((4, 6))
    nonfinite[0, 3] = 1
    assert flags.mid_layer_anomaly_steps(norms, nonfinite, 8.0)[0]
    assert flags.mid_layer_anomaly_steps(np.ones((3, 2)), None, 8.0).tolist() == [False] * 3  # too few layers


def test_persistence() -> None:
    assert flags.persistent([True] + [False] * 9) is None  # one step in ten: noise
    assert flags.persistent([False] * 10 + [True] * 3) == 12  # a run of three
    assert flags.persistent([False, True, True, True]) == 2  # two of four steps
    assert flags.persistent([True]) == 0  # a one-step sequence
    assert flags.persistent([True, False, True, False]) == 2  # share 2/4 >= 0.25 with 2 steps
    assert flags.persistent(np.zeros(0, dtype=bool)) is None


# -- repetition --------------------------------------------------------------------------------
def test_repetition_detector_needs_similarity_when_given() -> None:
    detector = RepetitionDetector(ngram=2, similarity_threshold=0.9)
    fired = [detector.update(t, s) for t, s in [(1, NAN), (2, NAN), (1, 0.2), (2, 0.5), (1, 0.95)]]
    assert fired == [False, False, False, False, True]
    assert detector.fired_at == 4 and detector.evidence["max_similarity"] == 0.95


def test_first_repeated_ngram() -> None:
    assert first_repeated_ngram([1, 2, 3, 4], n=2) is None
    assert first_repeated_ngram([], n=8) is None
    assert first_repeated_ngram([7] * 9, n=8) == 8
    with pytest.raises(ValueError):
        RepetitionDetector(ngram=1)


# -- early warning -----------------------------------------------------------------------------
def test_early_warning_detectors() -> None:
    rising = [1.0] * 6 + [1.1, 1.3, 1.7, 2.5, 4.0]
    assert early_warning.entropy_accelerating(rising)
    assert not early_warning.entropy_accelerating(rising[:9])  # fewer than 10 steps
    assert early_warning.margin_collapsed([0.5, 0.05, 0.02, 0.01, 0.05, 0.09])
    assert not early_warning.margin_collapsed([0.05] * 4)
    assert early_warning.margin_declining([0.9] * 5 + [0.5] * 2 + [0.1] * 5)
    assert early_warning.surprisal_volatile([0.01, 0.01, 0.01, 0.01, 9.0])
    assert early_warning.entropy_margin_divergence([5.0] * 5, [0.5] * 5, 4.0)
    assert not early_warning.entropy_margin_divergence([5.0] * 5, [0.1] * 5, 4.0)


@pytest.mark.parametrize("series", [EMPTY, [1.0], [NAN] * 12])
def test_early_warning_quiet_on_degenerate_series(series) -> None:
    result = early_warning.early_warning(series, series, series, 4.0)
    assert result.signals == {} and result.failure_risk == 0.0


def test_early_warning_scan_reports_first_step_and_only_detectors() -> None:
    margins = [0.9] * 5 + [0.05] * 5
    result = early_warning.early_warning([1.0] * 10, margins, [1.0] * 10, 4.0)
    assert result.signals == {early_warning.MARGIN_COLLAPSED: 9, early_warning.MARGIN_DECLINING: 9}
    assert result.failure_risk == 0.6
    # a flag is a flag: streamed firings that are not detectors are left out
    streamed = {flags.REPETITION_LOOP: 7, early_warning.MARGIN_COLLAPSED: 9}
    assert early_warning.early_warning([], [], [], 4.0, streamed).signals == {
        early_warning.MARGIN_COLLAPSED: 9
    }


# -- streaming monitor -------------------------------------------------------------------------
def test_monitor_fires_once_per_detector_and_stops_at_eos() -> None:
    monitor = SequenceMonitor(repetition_ngram=2, eos_token_ids=(0,))
    events = []
    for token in [5, 6, 5, 6, 5, 6]:
        events += monitor.observe_step(1.0, 0.5)
        events += monitor.observe_token(token, 1.0)
    assert [(e.kind, e.name, e.step) for e in events] == [(HEALTH_FLAG, flags.REPETITION_LOOP, 3)]
    monitor.observe_step(NAN, NAN, nan=True)
    monitor.observe_token(0)
    assert monitor.fired(flags.NAN) and monitor.ended
    assert monitor.observe_step(1.0, 0.5, inf=True) == []  # after EOS nothing counts


def test_monitor_early_warning_firing() -> None:
    monitor = SequenceMonitor()
    fired = []
    for _ in range(6):
        monitor.observe_step(1.0, 0.01)
        fired += monitor.observe_token(3, 0.5)
    assert [(f.kind, f.name, f.step) for f in fired] == [(EARLY_WARNING, early_warning.MARGIN_COLLAPSED, 4)]


# -- compound ----------------------------------------------------------------------------------
def test_compound_signals() -> None:
    found = compound.compound_signals([5.0] * 5, [0.5] * 5, [1.0] * 5, [0.5] * 5)
    assert [c.name for c in found] == [compound.CONFIDENT_CONFUSION]
    n = 12
    degenerating = compound.compound_signals(
        np.linspace(1, 4, n), np.linspace(0.9, 0.1, n), np.linspace(0.5, 3, n), [0.9] * n
    )
    assert compound.DEGENERATING_GENERATION in [c.name for c in degenerating]
    confident = dict(entropy=[0.5] * 6, margin=[0.9] * 6, surprisal=[0.1] * 6, topk_mass=[0.99] * 6)
    assert compound.compound_signals(**confident) == []  # needs repetition evidence
    assert compound.compound_signals(**confident, repetition_evidence=True)[0].name == (
        compound.CONFIDENT_REPETITION_RISK
    )
    bottleneck = compound.compound_signals(
        [4.0] * 5, [0.1] * 5, [1.0] * 5, [0.5] * 5, collapsed_head_share=0.5
    )
    assert compound.ATTENTION_BOTTLENECK in [c.name for c in bottleneck]
    lost = compound.compound_signals([5.0] * 5, [0.1] * 5, [1.0] * 5, [0.5] * 5, basin_score=[0.1] * 5)
    assert compound.CONTEXT_LOSS in [c.name for c in lost]


@pytest.mark.parametrize("series", [EMPTY, [1.0], [NAN, NAN]])
def test_compound_degenerate(series) -> None:
    assert compound.compound_signals(series, series, series, series) == []


# -- risk --------------------------------------------------------------------------------------
def test_risk_nan_is_one() -> None:
    result = risk.heuristic_risk(flags.HealthFlags(fired={flags.NAN: 0}), [1.0], [0.5], [0.9], [1.0])
    assert result.score == 1.0 and result.factors == [risk.NAN_OR_INF] and result.band == "high"


def test_risk_floor_plus_terms_capped() -> None:
    health = flags.HealthFlags(fired={flags.REPETITION_LOOP: 3})
    result = risk.heuristic_risk(health, [8.0] * 6, [0.0] * 6, [0.2] * 6, [5.0] * 6)
    assert result.score == 1.0
    assert result.factors[0] == flags.REPETITION_LOOP


def test_risk_healthy_low_and_empty() -> None:
    calm = risk.heuristic_risk(flags.HealthFlags(), [0.2] * 8, [0.9] * 8, [0.99] * 8, [0.1] * 8)
    assert calm.band == "low" and calm.score < 0.1
    assert risk.heuristic_risk(flags.HealthFlags(), EMPTY, EMPTY, EMPTY, EMPTY).score < 0.3


# -- blame -------------------------------------------------------------------------------------
def healthy_runs(n: int = 60, layers: int = 8, seed: int = 0) -> list[baseline.HealthyRun]:
    """Healthy generations of a model whose last layer's norm is always 20x the others'."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n):
        steps = int(rng.integers(8, 40))
        level = np.r_[np.full(layers - 1, 10.0), 200.0]
        norms = level * np.exp(rng.normal(0, 0.05, (steps, layers)))
        runs.append(baseline.HealthyRun(rng.gamma(2.0, 0.8, steps), norms))
    return runs


def test_layer_blame_judges_each_layer_against_its_own_healthy_range() -> None:
    runs = healthy_runs()
    model = baseline.build_baseline(runs, hidden_size=16, layers=8, vocab_size=96, budget=0.02)
    # the last layer is far from the others on every generation: without a baseline nothing is
    # judged, with one a healthy generation blames nothing
    assert blame.layer_blame(runs[0].l2_norm) == []
    assert blame.layer_blame(runs[0].l2_norm, baseline=model) == []
    norms = np.tile(np.r_[np.full(7, 10.0), 200.0], (12, 1))
    norms[:, 5] *= 3.0  # out of its own range
    norms[1:, 2] *= 0.5  # out of its own range, below it
    norms[6, 3] *= 50.0  # one token's massive activation: not a level
    nonfinite = np.zeros((12, 8))
    nonfinite[3, 4] = 1
    blamed = blame.layer_blame(norms, nonfinite, baseline=model)
    assert [(b.layer, b.reasons) for b in blamed] == [
        (4, [blame.NAN_OR_INF]),
        (2, [blame.L2_OUT_OF_RANGE]),
        (5, [blame.L2_OUT_OF_RANGE]),
    ]
    assert blamed[0].severity == 1.0
    # a baseline of another layer count is never applied
    assert blame.layer_blame(norms[:, :6], baseline=model) == []


def rates(model: baseline.Baseline, runs: list[baseline.HealthyRun]) -> np.ndarray:
    """Per signal (layer level, high entropy): the share of ``runs`` it fires on."""
    fired = []
    for r in runs:
        level = baseline.out_of_range(r.l2_norm, model)
        fired.append(
            (level.any(), baseline.high_entropy_statistic(r.entropy) > model.high_entropy_threshold_bits)
        )
    return np.mean(fired, axis=0)


def test_baseline_thresholds_keep_the_budget() -> None:
    # on the runs it was built from, by construction; on new healthy runs, on average over the draw
    # of the runs it was built from (the split-conformal guarantee)
    model = baseline.build_baseline(healthy_runs(200, seed=1), 16, 8, 96, budget=0.05)
    assert (rates(model, healthy_runs(200, seed=1)) <= 0.05).all()
    assert model.runs == 200 and model.budget == 0.05 and model.applies(16, 8, 96)
    assert not model.applies(16, 8, 97)
    fresh = healthy_runs(500, seed=99)
    built = [
        baseline.build_baseline(healthy_runs(100, seed=s), 16, 8, 96, budget=0.05) for s in range(10, 18)
    ]
    average = np.mean([rates(m, fresh) for m in built], axis=0)
    assert (average <= 0.05 + 0.025).all() and (average >= 0.01).all()


def test_baseline_needs_enough_runs() -> None:
    with pytest.raises(ValueError, match="at least 49"):
        baseline.build_baseline(healthy_runs(48), 16, 8, 96, budget=0.02)
    with pytest.raises(ValueError, match=r"\[steps, 9\]"):
        baseline.build_baseline(healthy_runs(60), 16, 9, 96, budget=0.02)


def test_statistics_match_the_flags_they_set() -> None:
    entropy = np.array([5.0, 1.0, 4.0, 0.5, 3.0, 2.0, 6.0, 1.5, 1.0, 2.5])
    stat = baseline.high_entropy_statistic(entropy)  # the flag fires exactly below this threshold
    assert flags.high_entropy_flag_step(flags.high_entropy_steps(entropy, stat - 1e-9)) is not None
    assert flags.high_entropy_flag_step(flags.high_entropy_steps(entropy, stat)) is None
    norms = np.full((10, 9), 10.0)
    norms[4:8, 3] = 55.0  # four consecutive steps at 5.5x the early layers
    stat = baseline.mid_layer_statistic(norms)
    assert stat == pytest.approx(5.5)
    assert flags.persistent(flags.mid_layer_anomaly_steps(norms, None, 5.4)) is not None
    assert flags.persistent(flags.mid_layer_anomaly_steps(norms, None, 5.5)) is None


def test_layer_blame_ignores_permanent_sink_heads() -> None:
    collapsed = np.zeros((6, 3))
    collapsed[:, 0] = 2  # structural: collapsed at every step
    collapsed[2:, 1] = 1  # collapsed in 4 of 6 steps
    assert [(b.layer, b.reasons) for b in blame.layer_blame(collapsed_heads=collapsed)] == [
        (1, [blame.ATTENTION_COLLAPSE])
    ]


def test_layer_blame_empty() -> None:
    assert blame.layer_blame(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4))) == []
    assert blame.layer_blame() == []


# -- fingerprint and hash ------------------------------------------------------------------------
@pytest.mark.parametrize("series", [EMPTY, [1.0], [NAN, 2.0, 3.0], list(np.linspace(0, 3, 40))])
def test_fingerprint_shape_and_finiteness(series) -> None:
    vector = fingerprint(series, series, series, series, 0.5, flags.HealthFlags(fired={flags.NAN: 0}))
    assert len(vector) == FINGERPRINT_LENGTH
    assert all(math.isfinite(v) for v in vector)
    assert vector[13] == 0.5 and vector[15] == 1.0 and vector[24] == 0.0


def test_prompt_hash_is_stable_and_content_free() -> None:
    key = b"k" * 32
    digest = prompt_hash([10, 11, 12], "model", key)
    assert len(digest) == 64 and digest == prompt_hash([10, 11, 12], "model", key)
    assert digest != prompt_hash([10, 11, 12], "other", key)
    assert digest != prompt_hash([10, 11, 12], "model", b"another key of 32 bytes.........")
    assert "10" not in digest


# -- narrative ---------------------------------------------------------------------------------
def sentences(text: str) -> int:
    return text.count(". ") + 1


def test_narrative_high_risk_with_recommendation() -> None:
    health = flags.HealthFlags(fired={flags.REPETITION_LOOP: 4})
    text = narrative(
        risk.RiskAssessment(0.95, [flags.REPETITION_LOOP]),
        health,
        [1.0, 3.0, 2.0],
        [compound.CompoundSignal("x", 0.5)],
        [blame.LayerBlame(3, [blame.L2_OUT_OF_RANGE])],
        token_text=lambda step: f"tok{step}",
    )
    assert "high (0.95)" in text and "step 1" in text and "'tok1'" in text
    assert "repetition penalty" in text and 2 <= sentences(text) <= 6
    assert "Blamed layers: 3 (l2_norm_out_of_range)." in text


def test_narrative_names_every_blamed_layer_with_its_own_reasons() -> None:
    blamed = [
        *(blame.LayerBlame(layer, [blame.NAN_OR_INF, blame.MID_LAYER_ANOMALY]) for layer in (15, 16, 17, 18)),
        blame.LayerBlame(28, [blame.NAN_OR_INF]),
        blame.LayerBlame(2, [blame.L2_OUT_OF_RANGE]),
        blame.LayerBlame(3, [blame.L2_OUT_OF_RANGE]),
    ]
    text = narrative(risk.RiskAssessment(0.5), flags.HealthFlags(), [1.0, 2.0], blamed=blamed)
    assert (
        "Blamed layers: 15-18 (nan_or_inf, mid_layer_anomaly); 28 (nan_or_inf); 2, 3 (l2_norm_out_of_range)."
        in text
    )


def test_a_flag_beside_a_low_fitted_risk_is_explained_and_the_risk_never_reads_zero() -> None:
    health = flags.HealthFlags(fired={flags.REPETITION_LOOP: 4})
    text = narrative(risk.RiskAssessment(0.0004, [], fitted=True), health, [1.0, 2.0])
    assert "Risk is low (<0.001)" in text
    assert "Health flags: repetition_loop (the fitted risk score reads" in text
    heuristic = narrative(risk.RiskAssessment(0.2, []), health, [1.0, 2.0])
    assert "Health flags: repetition_loop." in heuristic


def test_narrative_without_content_has_no_token_text() -> None:
    text = narrative(risk.RiskAssessment(0.1), flags.HealthFlags(), [1.0, 2.0])
    assert "token" not in text and 2 <= sentences(text) <= 6
    assert 2 <= sentences(narrative(risk.RiskAssessment(0.0), flags.HealthFlags(), EMPTY)) <= 6


# -- calibration -------------------------------------------------------------------------------
def test_profile_roundtrip_and_divergence(tmp_path) -> None:
    builder = ProfileBuilder("m")
    rng = np.random.default_rng(0)
    for _ in range(5):
        builder.add({"entropy": rng.normal(2, 0.5, 40)}, {"hidden.l2_norm": rng.normal(10, 1, (40, 3))})
    profile = builder.build()
    path = tmp_path / "p.json"
    profile.save(path)
    loaded = load_calibration(path)
    assert loaded is not None
    assert loaded.runs == 5 and loaded.metrics["entropy"].count == 200
    assert json.loads(path.read_text())["version"] == 1
    healthy = divergence(loaded, {"entropy": np.full(10, 2.0)}, {"hidden.l2_norm": np.full((10, 3), 10.0)})
    assert healthy.score < 0.05 and healthy.anomalies == []
    odd = divergence(loaded, {"entropy": np.full(10, 9.0)})
    assert odd.score > 0.5 and odd.anomalies == ["entropy"]
    assert divergence(loaded, {}).score == 0.0


@pytest.mark.parametrize("text", ["[]", "{}", '{"version": 99}', "not json", '{"version": 1, "model": "m"}'])
def test_bad_calibration_profiles_are_ignored_with_a_warning(text, tmp_path, caplog) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert load_calibration(path) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0]


def test_distribution_without_spread() -> None:
    assert np.isnan(Distribution.of([1.0, 1.0]).z(np.array([2.0]))).all()
    assert Distribution.of([]).count == 0


# -- assess (one sequence, end to end over a hand-made report) -----------------------------------
def make_sequence(steps: int, layers: int = 6, index: int = 0) -> rep.SequenceReport:
    hidden = {name: np.ones((steps, layers)) for name in ("l2_norm", "mean", "std", "max_abs")}
    hidden.update({name: np.zeros((steps, layers)) for name in ("nan_count", "inf_count", "clipped_count")})
    series = {
        rep.SERIES_ENTROPY: np.full(steps, 1.0),
        rep.SERIES_MARGIN: np.full(steps, 0.6),
        rep.SERIES_TOPK_MASS: np.full(steps, 0.95),
        rep.SERIES_SURPRISAL: np.full(steps, 0.5),
    }
    return rep.SequenceReport(index, steps, "stop", series, hidden)


@pytest.mark.parametrize("steps", [0, 1, 3, 50])
def test_assess_healthy_sequences_of_any_length(steps) -> None:
    health = assess(make_sequence(steps), ModelProfile().thresholds)
    assert health.flags.names == []
    assert health.risk.band == "low"
    assert len(health.fingerprint) == FINGERPRINT_LENGTH
    assert health.narrative


def test_assess_nan_in_a_middle_layer() -> None:
    sequence = make_sequence(10)
    sequence.hidden_layers["nan_count"][4, 2] = 3
    health = assess(sequence, ModelProfile().thresholds)
    assert health.flags.fired[flags.NAN] == 4
    assert health.risk.score == 1.0
    assert health.blame[0].layer == 2 and health.blame[0].severity == 1.0
    assert any(f.name == flags.NAN and f.step == 4 for f in health.firings)


def test_assess_batch_rows_of_different_lengths() -> None:
    short, long = make_sequence(2, index=0), make_sequence(30, index=1)
    long.hidden_layers["l2_norm"][:, 2:4] = 100.0
    results = [assess(s, ModelProfile().thresholds) for s in (short, long)]
    assert results[0].flags.names == []
    assert flags.MID_LAYER_ANOMALY in results[1].flags


def test_assess_runs_no_early_warning_detector_when_the_profile_turns_them_off() -> None:
    sequence = make_sequence(20)
    sequence.series[rep.SERIES_MARGIN] = np.full(20, 0.01)  # margin_collapsed holds from step 4
    on = assess(sequence, ModelProfile(early_warning=True).thresholds)
    off = assess(sequence, ModelProfile(early_warning=False).thresholds)
    assert early_warning.MARGIN_COLLAPSED in on.early_warning.signals
    assert off.early_warning.signals == {} and off.early_warning.failure_risk == 0.0
