"""The ``corevital`` command's help reads as plain text and describes both calibrate modes."""

from __future__ import annotations

import pytest

from opentelemetry.instrumentation.corevital import cli


@pytest.fixture(autouse=True)
def terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps option help to the terminal


def help_text(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_names_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys=capsys)
    assert "``" not in text
    assert "calibrate" in text and "--prompts" in text and "--labels" in text


def test_calibrate_help_describes_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text("calibrate", capsys=capsys)
    assert "``" not in text and ":func:" not in text
    assert "healthy-run profile" in text and "refit the risk score" in text
    assert "OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE" in text
    assert "OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR" in text
    assert '{"prompt": "...", "label": 1}' in text


def test_resume_regenerates_runs_cached_with_other_risk_features(tmp_path) -> None:
    import json

    from opentelemetry.instrumentation.corevital.signals.risk import RISK_FEATURES

    partial = tmp_path / "out.yaml.partial.jsonl"
    rows = [
        {"index": 0, "features": [0.0] * len(RISK_FEATURES)},
        {"index": 1, "features": [0.0] * (len(RISK_FEATURES) - 1)},  # an older version's features
        {"index": 2, "series": {}},  # a --prompts run: no features
    ]
    partial.write_text("\n".join(json.dumps(r) for r in rows) + "\n{cut")
    assert sorted(cli._done(partial)) == [0, 2]


def test_state_features_need_labels(tmp_path) -> None:
    with pytest.raises(SystemExit, match="needs --labels"):
        cli.main(
            [
                "calibrate",
                "--model",
                str(tmp_path),
                "--prompts",
                "p.txt",
                "--out",
                "o.json",
                "--state-features",
            ]
        )
