"""The health read-out as telemetry: log event, metrics, batch layout, profiles, calibration."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import tiny_models
from conftest import synthetic_baseline
from opentelemetry.instrumentation.corevital import cli
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.profiles import ModelProfile, load_calibration
from opentelemetry.instrumentation.corevital.signals import blame
from tiny_tokenizer import tiny_tokenizer


def test_evaluation_result_log_event_parented_to_the_span(instrument, telemetry) -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    instrument(logger_provider=provider)
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=6, do_sample=False)
    span = telemetry.span()
    (record,) = [r.log_record for r in exporter.get_finished_logs()]
    assert record.event_name == sc.EVENT_GEN_AI_EVALUATION_RESULT
    assert record.trace_id == span.context.trace_id and record.span_id == span.context.span_id
    a = record.attributes
    assert a[sc.GEN_AI_EVALUATION_NAME] == sc.COREVITAL_RISK_NAME
    assert a[sc.GEN_AI_EVALUATION_SCORE_VALUE] == span.attributes[sc.COREVITAL_RISK_SCORE]
    assert a[sc.GEN_AI_EVALUATION_SCORE_LABEL] in (sc.RISK_BAND_LOW, sc.RISK_BAND_MODERATE, sc.RISK_BAND_HIGH)


def test_health_attribute_types(instrument, telemetry) -> None:
    instrument()
    tiny_models.qwen2().generate(**tiny_models.prompt(), max_new_tokens=12, do_sample=False)
    a = telemetry.span().attributes
    assert type(a[sc.COREVITAL_RISK_SCORE]) is float and 0 <= a[sc.COREVITAL_RISK_SCORE] <= 1
    assert isinstance(a[sc.COREVITAL_RISK_FACTORS], tuple)
    for key in (
        sc.COREVITAL_FLAG_NAN_DETECTED,
        sc.COREVITAL_FLAG_REPETITION_LOOP,
        sc.COREVITAL_FLAG_MID_LAYER_ANOMALY,
    ):
        assert type(a[key]) is bool
    assert type(a[sc.COREVITAL_FLAG_HIGH_ENTROPY]) is bool
    assert type(a[sc.COREVITAL_HIGH_ENTROPY_STEPS]) is int
    assert type(a[sc.COREVITAL_HIGH_ENTROPY_THRESHOLD]) is float
    assert a[sc.COREVITAL_BASELINE_SOURCE] == sc.BASELINE_SOURCE_NONE  # no baseline for a tiny model
    assert sc.COREVITAL_BASELINE_BUDGET not in a
    assert type(a[sc.COREVITAL_EARLY_WARNING_FAILURE_RISK]) is float
    assert isinstance(json.loads(a[sc.COREVITAL_LAYER_BLAME_DETAILS]), list)
    assert a[sc.COREVITAL_FINGERPRINT_VERSION] == 2 and len(a[sc.COREVITAL_FINGERPRINT_VECTOR]) == 25
    assert isinstance(a[sc.COREVITAL_NARRATIVE], str) and a[sc.COREVITAL_NARRATIVE].startswith("Risk is")


def test_batch_span_describes_the_worst_sequence(instrument, telemetry) -> None:
    instrument()
    tiny_models.llama().generate(
        **tiny_models.prompt(batch=3, padded=True), max_new_tokens=10, do_sample=True
    )
    a = telemetry.span().attributes
    scores = a[sc.COREVITAL_SEQUENCE_RISK_SCORES]
    assert len(scores) == 3 and len(a[sc.COREVITAL_SEQUENCE_FAILURE_RISKS]) == 3
    assert a[sc.COREVITAL_RISK_SCORE] == max(scores)
    assert scores[a[sc.COREVITAL_SERIES_SEQUENCE_INDEX]] == max(scores)
    histogram = telemetry.metrics()[sc.METRIC_COREVITAL_RISK_SCORE].data.data_points[0]
    assert histogram.count == 3  # once per sequence
    assert tuple(histogram.explicit_bounds) == sc.BUCKETS_COREVITAL_RISK_SCORE


def test_user_profiles_dir_overrides_the_shipped_profile(instrument, telemetry, tmp_path) -> None:
    (tmp_path / "llama.yaml").write_text("name: llama\nhigh_entropy_threshold_bits: 0.5\n")
    instrument(profiles_dir=str(tmp_path))
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=6, min_new_tokens=6, do_sample=False)
    a = telemetry.span().attributes
    assert a[sc.COREVITAL_HIGH_ENTROPY_STEPS] == 6 and a[sc.COREVITAL_HIGH_ENTROPY_THRESHOLD] == 0.5
    # "high" means unusual for this model: without its baseline the flag is never raised
    assert a[sc.COREVITAL_FLAGS] == () and a[sc.COREVITAL_FLAG_HIGH_ENTROPY] is False


def test_a_baseline_of_the_model_shape_judges_it(instrument, telemetry, tmp_path) -> None:
    other_shape = synthetic_baseline(layers=3, norm=1.0, entropy=0.1)
    own = synthetic_baseline(layers=4, norm=1000.0, entropy=0.1)
    (tmp_path / "llama.yaml").write_text(yaml.safe_dump({"name": "llama", "baselines": [other_shape, own]}))
    instrument(profiles_dir=str(tmp_path))
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=6, min_new_tokens=6, do_sample=False)
    a = telemetry.span().attributes
    assert (
        a[sc.COREVITAL_BASELINE_SOURCE] == sc.BASELINE_SOURCE_PROFILE
        and a[sc.COREVITAL_BASELINE_BUDGET] == 0.05
    )
    # a random tiny model is far more uncertain than these healthy runs, and its norms far smaller
    assert a[sc.COREVITAL_HIGH_ENTROPY_THRESHOLD] == pytest.approx(own["high_entropy_threshold_bits"])
    assert sc.FLAG_HIGH_ENTROPY in a[sc.COREVITAL_FLAGS] and a[sc.COREVITAL_FLAG_HIGH_ENTROPY] is True
    details = json.loads(a[sc.COREVITAL_LAYER_BLAME_DETAILS])
    assert sorted(d["layer"] for d in details) == [0, 1, 2, 3]
    assert all(blame.L2_OUT_OF_RANGE in d["reasons"] for d in details)
    assert (
        "Blamed layers: " in a[sc.COREVITAL_NARRATIVE] and "l2_norm_out_of_range" in a[sc.COREVITAL_NARRATIVE]
    )


def test_bad_profiles_dir_warns_and_uses_shipped(instrument, telemetry, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        instrumentor = instrument(profiles_dir="/does/not/exist")
    assert instrumentor.settings.profiles_dir is None
    assert "OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR" in caplog.text or "profiles_dir" in caplog.text


@pytest.fixture
def tiny_model_dir(tmp_path):  # type: ignore[no-untyped-def]
    directory = tmp_path / "tiny-llama"
    tiny_models.llama().save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


def test_calibrate_cli_builds_and_resumes(tiny_model_dir, tmp_path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"w{10 + i} w{20 + i} w{30 + i}"}) for i in range(4)))
    out = tmp_path / "profile.json"
    partial = tmp_path / "profile.json.partial.jsonl"
    done = {
        "index": 0,
        "key": cli.resume_key(prompts.read_bytes(), str(tiny_model_dir), None, 5),
        "series": {n: [1.0, 2.0] for n in cli.PROFILE_SERIES},
        "layers": {"hidden.l2_norm": [[1.0] * 4] * 2},
    }
    partial.write_text(json.dumps(done) + "\n{cut off")
    arguments = ["--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(out)]
    code = cli.main(["calibrate", *arguments, "--max-new-tokens", "5"])
    assert code == 0 and not partial.exists()
    profile = load_calibration(out)
    assert profile is not None
    assert profile.runs == 4
    assert profile.metrics["entropy"].count == 2 + 3 * 5  # the resumed record, then 3 generations
    assert len(profile.layer_metrics["hidden.l2_norm"]) == 4


def test_calibration_profile_gives_divergence(instrument, telemetry, tiny_model_dir, tmp_path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("w10 w11 w12\nw20 w21\nw30 w31 w32 w33\n")
    out = tmp_path / "profile.json"
    arguments = ["--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(out)]
    assert cli.main(["calibrate", *arguments, "--no-resume"]) == 0
    instrument(calibration_profile=str(out))
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=8, do_sample=False)
    a = telemetry.span().attributes
    assert 0 <= a[sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE] <= 1
    assert isinstance(a[sc.COREVITAL_CALIBRATION_ANOMALIES], tuple)


@pytest.mark.parametrize("content", ["{not json", '{"version": 7}'])
def test_malformed_calibration_profile_is_ignored(instrument, telemetry, tmp_path, caplog, content) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        instrument(calibration_profile=str(path))
    assert "calibration profile" in caplog.text
    tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=3, do_sample=False)
    assert sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE not in telemetry.span().attributes


def test_stop_on_invalid_signal_warns(instrument, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        instrumentor = instrument(stop_on="repetition_loop,teleportation")
    assert instrumentor.settings.stop_on == frozenset()
    assert "repetition_loop" in caplog.text  # the allowed values are listed


def test_stop_on_aliases() -> None:
    from opentelemetry.instrumentation.corevital.config import Settings

    assert Settings.resolve({"stop_on": "repetition_loop, nan"}, {}).stop_on == {
        "repetition_loop",
        "nan_detected",
    }


@pytest.mark.parametrize("state_features", [False, True])
def test_calibrate_labels_refits_the_risk_model(
    state_features, tiny_model_dir, tmp_path, instrument, telemetry
) -> None:
    labels = tmp_path / "labels.jsonl"
    rows = [{"prompt": f"w{10 + i} w{20 + i}", "label": i % 2} for i in range(6)]
    labels.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "llama.yaml"
    assert (
        cli.main(
            [
                "calibrate",
                *("--model", str(tiny_model_dir), "--labels", str(labels), "--out", str(out)),
                *(["--state-features"] if state_features else []),
            ]
        )
        == 0
    )
    instrumentor = instrument(profiles_dir=str(tmp_path))
    from opentelemetry.instrumentation.corevital.profiles import profile_for

    model = tiny_models.llama()
    profile = profile_for(model, instrumentor.settings.profiles_dir)
    assert profile.name == "llama" and profile.risk_model is not None
    assert profile.l2_explosion_multiplier == 10.0  # the rest of the shipped llama profile stays
    assert profile.risk is not None
    read = profile.risk.short.features + profile.risk.long.features
    if state_features:  # the state probe is fitted too, for this model's shape
        assert profile.risk.probe_for(model.config.hidden_size, model.config.num_hidden_layers) is not None
        assert "state_probe" in read and "state_spread" in read
    else:  # the shipped feature set, no probe
        assert profile.risk.probe is None and "state_probe" not in read and "state_spread" not in read
    model.generate(**tiny_models.prompt(), max_new_tokens=4, do_sample=False)
    assert 0 <= telemetry.span().attributes[sc.COREVITAL_RISK_SCORE] <= 1


def test_calibrate_labels_needs_labels(tiny_model_dir, tmp_path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"prompt": "w10"}))
    with pytest.raises(SystemExit):
        cli.main(
            [
                "calibrate",
                "--model",
                str(tiny_model_dir),
                "--labels",
                str(labels),
                "--out",
                str(tmp_path / "x"),
            ]
        )


def test_calibrate_cli_writes_the_baseline_into_a_model_profile(tiny_model_dir, tmp_path, capsys) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"w{10 + i} w{20 + i} w{30 + i}"}) for i in range(5)))
    out = tmp_path / "llama.yaml"
    out.write_text("name: llama\nrepetition_ngram: 5\n")  # other settings are kept
    arguments = ["--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(out)]
    assert cli.main(["calibrate", *arguments, "--max-new-tokens", "5", "--budget", "0.2"]) == 0
    data = yaml.safe_load(out.read_text())
    assert data["repetition_ngram"] == 5
    (written,) = data["baselines"]
    assert (written["layers"], written["vocab_size"], written["runs"], written["budget"]) == (4, 96, 5, 0.2)
    profile = ModelProfile.model_validate(data).for_shape(written["hidden_size"], 4, 96)
    assert profile.baseline is not None
    assert profile.high_entropy_threshold_bits == written["high_entropy_threshold_bits"]
    # too few prompts for the default budget: one line, exit status 2
    with pytest.raises(SystemExit) as stopped:
        cli.main(["calibrate", *arguments, "--max-new-tokens", "5", "--no-resume"])
    assert stopped.value.code == 2 and "at least 99" in capsys.readouterr().err


def test_flags_are_counted_as_flags_never_as_early_warnings(instrument, telemetry) -> None:
    # a middle layer exploding from step 2: the mid-layer anomaly flag, with the shipped profiles
    # (early-warning detectors off); it used to be passed through into the early warnings too
    from injections import StepCounter, layer_output_hook

    instrument()
    model = tiny_models.llama(num_hidden_layers=6)
    counter = StepCounter(model)
    model.model.layers[2].register_forward_hook(
        layer_output_hook(lambda h: h * 1000 if counter.step >= 2 else h)
    )
    model.generate(**tiny_models.prompt(), max_new_tokens=10, min_new_tokens=10, do_sample=False)
    a = telemetry.span().attributes
    assert sc.FLAG_MID_LAYER_ANOMALY in a[sc.COREVITAL_FLAGS]
    assert a[sc.COREVITAL_EARLY_WARNING_SIGNALS] == () and a[sc.COREVITAL_EARLY_WARNING_FAILURE_RISK] == 0.0
    metrics = telemetry.metrics()
    flagged = {
        p.attributes[sc.COREVITAL_FLAG_NAME]
        for p in metrics[sc.METRIC_COREVITAL_HEALTH_FLAGS].data.data_points
    }
    assert sc.FLAG_MID_LAYER_ANOMALY in flagged
    warnings = metrics.get(sc.METRIC_COREVITAL_EARLY_WARNINGS)
    assert warnings is None or not list(warnings.data.data_points)
