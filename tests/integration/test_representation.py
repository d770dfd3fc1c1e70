"""Representation features (issue 13, item 2): the middle layer's projected states, their spread
(LLM-Check's hidden score) and the per-model state probe, from capture to risk score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tiny_models
from opentelemetry.instrumentation.corevital.fitting import fit_probe, fit_risk_model, scored_rows
from opentelemetry.instrumentation.corevital.profiles import ModelProfile
from opentelemetry.instrumentation.corevital.signals.representation import (
    StateProbe,
    state_mean,
    state_spread,
)
from opentelemetry.instrumentation.corevital.signals.risk import (
    DEFAULT_RISK_FEATURES,
    RISK_FEATURES,
    STATE_FEATURES,
    RiskModel,
)
from opentelemetry.instrumentation.corevital.summaries.representation import (
    PROJECTION_DIMS,
    project_states,
    projection_matrix_numpy,
    representation_layer,
)


def test_projection_is_fixed_and_leaves_torch_random_state_alone() -> None:
    """The matrix is the same on every call and process (seeded NumPy), and drawing it does not
    move torch's global generator, so sampled generations stay identical."""
    torch.manual_seed(5)
    before = torch.get_rng_state()
    projection_matrix_numpy.cache_clear()
    states = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    projected = project_states(states)
    assert torch.equal(torch.get_rng_state(), before)
    assert projected.shape == (3, PROJECTION_DIMS) and projected.dtype == torch.float32
    np.testing.assert_allclose(
        projected.numpy(), states.numpy() @ projection_matrix_numpy(40), rtol=1e-5, atol=1e-6
    )
    projection_matrix_numpy.cache_clear()
    np.testing.assert_array_equal(project_states(states).numpy(), projected.numpy())
    # half precision states are projected in float32
    assert project_states(states.half()).dtype == torch.float32


def _middle_layer_states(model, inputs, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The middle layer's last-position state at every step, by one plain forward over the prompt
    and the generated tokens (position i predicts token i + 1)."""
    prompt = inputs["input_ids"].shape[1]
    full = torch.cat([inputs["input_ids"], tokens[None]], dim=1)
    with torch.no_grad():
        hidden = model(full, output_hidden_states=True).hidden_states[1:]
    layer = hidden[representation_layer(len(hidden))][0]
    return layer[prompt - 1 : prompt - 1 + len(tokens)]


@pytest.mark.parametrize("stop_on", ["", "nan"])
def test_capture_projects_the_middle_layer_state_of_every_step(instrument, stop_on: str) -> None:
    """Deferred (blocks) and live (stop_on) capture both give, per step, the projection of the state
    an independent forward computes."""
    from opentelemetry.instrumentation.corevital import health_reports

    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    instrument(capture="hidden", stop_on=stop_on)
    with health_reports() as reports:
        out = model.generate(**inputs, max_new_tokens=37, min_new_tokens=37, do_sample=False)
    sequence = reports.last.capture.sequences[0]
    generated = out[0, inputs["input_ids"].shape[1] :]
    expected = project_states(_middle_layer_states(model, inputs, generated)).numpy()
    assert sequence.state_projection is not None and sequence.state_projection.shape == (37, PROJECTION_DIMS)
    np.testing.assert_allclose(sequence.state_projection, expected, rtol=1e-3, atol=1e-4)
    # the shipped risk model reads no hidden-state feature, so they are not computed for it
    features = reports.last.sequences[0].features
    assert len(features) == len(RISK_FEATURES)
    assert all(math.isnan(features[RISK_FEATURES.index(f)]) for f in STATE_FEATURES)
    assert math.isfinite(features[RISK_FEATURES.index("entropy_mean")])


def test_projection_is_absent_below_hidden_and_under_beams(instrument, tmp_path) -> None:
    import yaml

    from opentelemetry.instrumentation.corevital import health_reports

    model = tiny_models.llama()
    x, y = _synthetic()  # a risk model that reads the state features, so that they are computed
    reads_state = fit_risk_model(x, y, use=RISK_FEATURES)
    (tmp_path / "llama.yaml").write_text(
        yaml.safe_dump({"name": "llama", "risk_model": reads_state.to_mapping()})
    )
    instrument(capture="hidden", profiles_dir=str(tmp_path))
    with health_reports() as reports:
        model.generate(**tiny_models.prompt(), max_new_tokens=5, do_sample=False)
    assert math.isfinite(reports.last.sequences[0].features[RISK_FEATURES.index("state_spread")])
    instrument(capture="logits")
    with health_reports() as reports:
        model.generate(**tiny_models.prompt(), max_new_tokens=5, do_sample=False)
    assert reports.last.capture.sequences[0].state_projection is None
    instrument(capture="hidden", profiles_dir=str(tmp_path))
    with health_reports() as reports:
        model.generate(**tiny_models.prompt(), max_new_tokens=5, num_beams=2, do_sample=False)
    assert all(s.state_projection is None for s in reports.last.capture.sequences)
    assert math.isnan(reports.last.sequences[0].features[RISK_FEATURES.index("state_spread")])


def test_state_spread_is_llm_checks_mean_log_eigenvalue() -> None:
    rng = np.random.default_rng(0)
    states = rng.standard_normal((20, 8)) * np.array([3.0, 1, 1, 1, 1, 1, 1, 0.1])
    centred = states - states.mean(axis=0)
    eigen = np.linalg.eigvalsh(centred.T @ centred / 20)  # the covariance's eigenvalues
    assert state_spread(states) == pytest.approx(float(np.mean(np.log(eigen + 1e-6))), rel=1e-9)
    # more spread, higher score; the same state repeated, the floor
    assert state_spread(states * 2) > state_spread(states)
    assert state_spread(np.ones((5, 8))) == pytest.approx(math.log(1e-6))
    # fewer steps than dimensions: only the n - 1 nonzero eigenvalues count; NaN rows are skipped
    short = states[:4].copy()
    with_nan = np.vstack([short, np.full((1, 8), np.nan)])
    assert math.isfinite(state_spread(short)) and state_spread(with_nan) == pytest.approx(state_spread(short))
    assert math.isnan(state_spread(None)) and math.isnan(state_spread(states[:1]))
    np.testing.assert_allclose(state_mean(with_nan, 8), short.mean(axis=0))
    assert np.isnan(state_mean(None, 8)).all() and np.isnan(state_mean(states, 4)).all()


def _synthetic(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of features and mean states where only the states say which generations failed."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(float)
    features = rng.standard_normal((n, len(RISK_FEATURES)))
    features[:, RISK_FEATURES.index("output_tokens_log")] = np.log1p(np.where(np.arange(n) % 2, 10, 100))
    means = rng.standard_normal((n, PROJECTION_DIMS))
    means[:, 3] += 1.5 * labels
    return np.hstack([features, means]), labels


def test_probe_is_cross_fitted_and_carried_by_the_risk_model() -> None:
    from eval.evaluate import auroc

    x, y = _synthetic()
    model = fit_risk_model(x, y, probe_shape=(576, 30), use=RISK_FEATURES)
    assert model.probe is not None and model.probe.dims == PROJECTION_DIMS
    assert abs(model.probe.weights[3]) == max(abs(w) for w in model.probe.weights)
    column = RISK_FEATURES.index("state_probe")
    for part in (model.short, model.long):
        assert part.weights[column] > 0.3  # the risk model relies on the probe's score
    test_x, test_y = _synthetic(seed=1)
    assert auroc(np.asarray(model.predict(scored_rows(model, test_x))), test_y.astype(bool)) > 0.75
    # without its input the feature is undefined and counts as average
    plain = scored_rows(model, test_x)
    plain[:, column] = np.nan
    assert auroc(np.asarray(model.predict(plain)), test_y.astype(bool)) < 0.65
    # without probe_shape no probe is fitted; by default (the shipped feature set) neither state
    # feature is read
    assert fit_risk_model(x, y, use=RISK_FEATURES).probe is None
    shipped = fit_risk_model(x, y, probe_shape=(576, 30))
    assert shipped.probe is None and shipped.short.features == DEFAULT_RISK_FEATURES
    assert not set(STATE_FEATURES) & set(shipped.long.features)


def test_probe_round_trips_through_a_profile_and_applies_only_to_its_shape(tmp_path) -> None:
    x, y = _synthetic()
    model = fit_risk_model(x, y, probe_shape=(576, 30), use=RISK_FEATURES)
    profile = ModelProfile.model_validate({"name": "smollm2", "risk_model": model.to_mapping()})
    assert profile.risk is not None and profile.risk.to_mapping() == model.to_mapping()
    assert RiskModel.from_mapping(model.to_mapping()).to_mapping() == model.to_mapping()
    assert model.probe_for(576, 30) is model.probe
    assert model.probe_for(576, 12) is None and model.probe_for(64, 30) is None
    probe = StateProbe.from_mapping(model.probe.to_mapping())
    assert math.isnan(probe.logit(np.full(PROJECTION_DIMS, np.nan)))
    assert fit_probe(x[:, len(RISK_FEATURES) :], np.zeros(len(y)), 576, 30) is None


def test_the_probe_scores_a_real_call_on_a_model_of_its_shape(instrument, tmp_path, monkeypatch) -> None:
    """A profile whose probe matches the tiny model's shape makes ``state_probe`` defined on the
    call's features; a probe for another shape leaves it undefined."""
    import yaml

    from opentelemetry.instrumentation.corevital import health_reports

    model = tiny_models.llama()
    layers = model.config.num_hidden_layers
    x, y = _synthetic()
    column = RISK_FEATURES.index("state_probe")
    for hidden_size, defined in ((model.config.hidden_size, True), (model.config.hidden_size + 1, False)):
        fitted = fit_risk_model(x, y, probe_shape=(hidden_size, layers), use=RISK_FEATURES)
        directory = tmp_path / str(hidden_size)
        directory.mkdir()
        (directory / "llama.yaml").write_text(
            yaml.safe_dump({"name": "llama", "risk_model": fitted.to_mapping()})
        )
        monkeypatch.setenv("OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR", str(directory))
        instrument(capture="hidden")
        with health_reports() as reports:
            model.generate(**tiny_models.prompt(), max_new_tokens=12, do_sample=False)
        features = reports.last.sequences[0].features
        assert math.isfinite(features[column]) is defined
        assert math.isfinite(features[RISK_FEATURES.index("state_spread")])


def test_a_bad_probe_in_a_profile_gives_one_warning_and_the_shipped_risk_model(
    instrument, telemetry, tmp_path, caplog
) -> None:
    import logging

    import yaml

    from opentelemetry.instrumentation.corevital import semconv as sc
    from opentelemetry.instrumentation.corevital.profiles import clear_caches, load_profiles

    x, y = _synthetic()
    mapping = fit_risk_model(x, y, probe_shape=(32, 4), use=RISK_FEATURES).to_mapping()
    mapping["probe"]["scale"][0] = -1.0
    (tmp_path / "llama.yaml").write_text(yaml.safe_dump({"name": "llama", "risk_model": mapping}))
    clear_caches()
    with caplog.at_level(logging.WARNING):
        instrument(profiles_dir=str(tmp_path))
        tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=5, do_sample=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "probe" in warnings[0] and "scale" in warnings[0], warnings
    risk = load_profiles(str(tmp_path))["llama"].risk
    assert risk is not None and risk.probe is None and risk.short.features == DEFAULT_RISK_FEATURES
    assert sc.COREVITAL_RISK_SCORE in telemetry.span().attributes


def test_rows_of_another_width_are_refused_clearly() -> None:
    x, y = _synthetic()
    model = fit_risk_model(x, y)
    with pytest.raises(ValueError, match="RISK_FEATURES"):
        model.predict(np.zeros(len(RISK_FEATURES) - 2))
    assert 0.0 <= float(model.predict(x[0, : len(RISK_FEATURES)])) <= 1.0


def test_a_probe_applies_only_to_its_projection() -> None:
    x, y = _synthetic()
    probe = fit_risk_model(x, y, probe_shape=(576, 30), use=RISK_FEATURES).probe
    assert probe is not None and probe.applies(576, 30)
    data = probe.to_mapping()
    assert data["seed"] == 13 and data["layer"] == 15
    assert not StateProbe.from_mapping({**data, "seed": 14}).applies(576, 30)
    assert not StateProbe.from_mapping({**data, "layer": 14}).applies(576, 30)
    with pytest.raises(ValueError, match="finite"):
        StateProbe.from_mapping({**data, "intercept": float("nan")})


def test_projection_rows_follow_each_sequence_in_a_padded_batch(instrument) -> None:
    """Batch of two, left-padded, with stop_on off (blocks) and on (per step): each row's projection is
    that row's middle-layer state from an independent forward with the same mask and positions."""
    from opentelemetry.instrumentation.corevital import health_reports

    model = tiny_models.llama()
    inputs = tiny_models.prompt(batch=2, padded=True)
    prompt = inputs["input_ids"].shape[1]
    for stop_on in ("", "nan"):
        instrument(capture="hidden", stop_on=stop_on)
        with health_reports() as reports:
            out = model.generate(**inputs, max_new_tokens=9, min_new_tokens=9, do_sample=False)
        mask = torch.cat([inputs["attention_mask"], torch.ones(2, 9, dtype=torch.long)], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            hidden = model(
                out, attention_mask=mask, position_ids=positions, output_hidden_states=True
            ).hidden_states[1:]
        layer = hidden[representation_layer(len(hidden))]
        for row, sequence in enumerate(reports.last.capture.sequences):
            expected = project_states(layer[row, prompt - 1 : prompt - 1 + 9]).numpy()
            np.testing.assert_allclose(sequence.state_projection, expected, rtol=1e-3, atol=1e-4)
