"""The expected failure rate moves the span's risk score of a real generate() call, never its output."""

from __future__ import annotations

from opentelemetry.instrumentation.corevital.fitting import fit_risk_model
from risk_rows import labelled


def test_the_setting_moves_the_span_score_and_not_the_output(tmp_path, instrument, telemetry) -> None:
    import yaml

    import tiny_models
    from opentelemetry.instrumentation.corevital import semconv as sc
    from opentelemetry.instrumentation.corevital.profiles import clear_caches
    from outputs import assert_identical

    x, y = labelled()
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "llama.yaml").write_text(
        yaml.safe_dump({"name": "llama", "risk_model": fit_risk_model(x, y).to_mapping()})
    )
    clear_caches()
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    scores = []
    for rate in (0.01, 0.99):
        telemetry.exporter.clear()
        instrument(profiles_dir=str(directory), expected_failure_rate=rate)
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        assert_identical(plain, out)
        scores.append(telemetry.span().attributes[sc.COREVITAL_RISK_SCORE])
    assert 0.0 < scores[0] < scores[1] < 1.0
    clear_caches()
