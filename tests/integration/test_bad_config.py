"""Bad configuration never reaches the user's generation: one clear warning naming the file, the
field, the bad value and the fallback, and the output stays identical."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tiny_models
from opentelemetry.instrumentation.corevital import profiles
from opentelemetry.instrumentation.corevital import semconv as sc
from opentelemetry.instrumentation.corevital.profiles import ModelProfile, clear_caches, load_profiles
from outputs import assert_identical

SHIPPED_LLAMA = ModelProfile.model_validate({"name": "llama", "l2_explosion_multiplier": 10.0})

LLAMA = "name: llama\n"
# 414 bytes that a YAML loader following its aliases expands to 9**9 strings
ALIAS_BOMB = "".join(
    f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9 if i else ['lol'] * 9)}]\n" for i in range(9)
)
NAN_RISK_MODEL = """risk_model:
  split_output_tokens: 4
  short: {features: [entropy_mean], mean: [0.0], scale: [1.0], weights: [.nan], intercept: 0.0}
  long: {features: [entropy_mean], mean: [0.0], scale: [1.0], weights: [1.0], intercept: 0.0}
"""


def unknown_keys(count: int) -> str:
    return "".join(f"k{i}: 1\n" for i in range(count))


# (file name, text, what the warning must name, the field, the value the profile keeps)
MODEL_PROFILES = [
    ("llama.yaml", "name: llama\nrepetition_ngram: 1\n", ["repetition_ngram", "1", "using 6"], "repetition_ngram", 6),  # noqa: E501
    ("llama.yaml", "name: llama\nhigh_entropy_threshold_bits: lots\n", ["high_entropy_threshold_bits", "'lots'"],  # noqa: E501
     "high_entropy_threshold_bits", 3.5),
    ("llama.yaml", "name: llama\nl2_explosion_multiplier: -2\n", ["l2_explosion_multiplier", "-2", "10.0"],
     "l2_explosion_multiplier", 10.0),
    ("llama.yaml", "name: llama\nrepetiton_ngram: 5\n", ["unknown key", "repetiton_ngram"], "repetition_ngram", 6),  # noqa: E501
    ("llama.yaml", "name: llama\nrepetition_ngram: [6\n", ["cannot be read"], "repetition_ngram", 6),
    ("llama.yaml", "- just\n- a list\n", ["must be a mapping"], "repetition_ngram", 6),
    ("llama.yaml", "name: llama\nrisk_model: {split_output_tokens: 4}\n", ["risk_model"], "repetition_ngram", 6),  # noqa: E501
    ("llama.yaml", "\x00\xff binary garbage", ["cannot be read"], "repetition_ngram", 6),
    # hostile files: nesting, aliases, non-finite numbers, size, many unknown keys, a huge value
    ("llama.yaml", LLAMA + "repetition_ngram: " + "[" * 100_000 + "]" * 100_000, ["cannot be read", "nesting"],  # noqa: E501
     "repetition_ngram", 6),
    ("llama.yaml", LLAMA + "repetition_ngram: " + "[" * 40 + "]" * 40, ["nests deeper than 32"], "repetition_ngram", 6),  # noqa: E501
    ("llama.yaml", LLAMA + "repetition_ngram:\n" + "- " * 20_000 + "8\n", ["nests deeper than 32"],
     "repetition_ngram", 6),
    ("llama.yaml", LLAMA + ALIAS_BOMB, ["alias *l0", "not allowed"], "repetition_ngram", 6),
    ("llama.yaml", LLAMA + "l2_explosion_multiplier: .inf\n",
     ["l2_explosion_multiplier", "not a finite number", "using 10.0"], "l2_explosion_multiplier", 10.0),
    ("llama.yaml", LLAMA + "high_entropy_threshold_bits: .nan\n", ["high_entropy_threshold_bits", "not a finite"],  # noqa: E501
     "high_entropy_threshold_bits", 3.5),
    ("llama.yaml", LLAMA + NAN_RISK_MODEL,
     ["invalid risk_model", "risk_model.short.weights.0: not a finite number", "using the shipped value"],
     "repetition_ngram", 6),
    ("llama.yaml", LLAMA + "repetition_ngram: 9\n" + unknown_keys(300_000), ["bytes, more than the 262,144 allowed"],  # noqa: E501
     "repetition_ngram", 6),
    ("llama.yaml", LLAMA + "repetition_ngram: 9\n" + unknown_keys(5_000),
     ["unknown keys 'k0', 'k1', 'k2' and 4,997 more ignored"], "repetition_ngram", 9),
    ("llama.yaml", LLAMA + "repetition_ngram: '" + "9" * 100_000 + "'\n", ["invalid repetition_ngram", "using 6"],  # noqa: E501
     "repetition_ngram", 6),
    ("llama.yaml", LLAMA + 'repetition_ngram: "\\e[31mred"\n', ["invalid repetition_ngram", "\\x1b"],
     "repetition_ngram", 6),
]  # fmt: skip
#: The longest warning a bad file may give, path excluded.
MAX_WARNING_CHARS = 400


@pytest.mark.parametrize(
    ("name", "text", "named", "field", "kept"),
    MODEL_PROFILES,
    ids=[str(i) for i in range(len(MODEL_PROFILES))],
)
def test_bad_model_profile(name, text, named, field, kept, tmp_path, instrument, telemetry, caplog) -> None:
    directory = tmp_path / "profiles"
    directory.mkdir()
    path = directory / name
    path.write_bytes(
        text.encode("utf-8", "surrogateescape") if "\x00" not in text else b"\x00\xff\xfe garbage"
    )
    clear_caches()
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with caplog.at_level(logging.WARNING):
        instrument(profiles_dir=str(directory))
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert_identical(plain, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [w[:500] for w in warnings[:3]]
    assert str(path) in warnings[0]
    assert len(warnings[0].replace(str(path), "")) < MAX_WARNING_CHARS, warnings[0][:1000]
    assert "\x1b" not in warnings[0]  # control characters are escaped
    for word in named:
        assert word in warnings[0], (word, warnings[0])
    profile = load_profiles(str(directory))["llama"]
    assert getattr(profile, field) == kept
    assert profile.l2_explosion_multiplier == SHIPPED_LLAMA.l2_explosion_multiplier  # the rest is shipped
    assert sc.COREVITAL_RISK_SCORE in telemetry.span().attributes


NAN = float("nan")
CALIBRATION = {"version": 1, "model": "m", "runs": 3}
NAN_DISTRIBUTION = {"count": 5, "mean": NAN, "std": float("inf"), "quantiles": [NAN, 0, 1, 2, float("-inf")]}

CALIBRATION_FILES = [
    ("corrupt", "{not json", "not valid JSON"),
    ("foreign", json.dumps({"spans": [1, 2, 3]}), "version"),
    ("wrong type", json.dumps({"version": 1, "model": "m", "runs": "many"}), "runs"),
    ("out of range", json.dumps({"version": 1, "model": "m", "runs": -3}), "runs"),
    ("unknown key", json.dumps({"version": 1, "model": "m", "runs": 3, "colour": "red"}), "colour"),
    ("bad distribution", json.dumps({"version": 1, "model": "m", "runs": 1, "metrics": {"entropy": {"count": 1}}}),  # noqa: E501
     "metrics.entropy"),
    ("nested 100,000 deep", "[" * 100_000 + "]" * 100_000, "nests deeper than 32 levels"),
    ("object nested 100,000 deep", '{"a": ' * 100_000 + "1" + "}" * 100_000, "nests deeper than 32 levels"),
    ("NaN and Inf", json.dumps({**CALIBRATION, "metrics": {"entropy": NAN_DISTRIBUTION}}),
     "metrics.entropy: a distribution with a count must hold finite numbers"),
    ("no data", json.dumps({**CALIBRATION, "metrics": {"entropy": {**NAN_DISTRIBUTION, "count": 0}}}),
     "no metric has a value"),
    ("2,000 unknown keys", json.dumps({**CALIBRATION, **{f"k{i}": 1 for i in range(2_000)}}),
     "unknown keys 'k0', 'k1', 'k2' and 1,997 more"),
    ("300,000 unknown keys", json.dumps({**CALIBRATION, **{f"k{i}": 1 for i in range(300_000)}}),
     "more than the 1,048,576 allowed"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "named"), CALIBRATION_FILES, ids=[c[0] for c in CALIBRATION_FILES])
def test_bad_calibration_profile(case, text, named, tmp_path, instrument, telemetry, caplog) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(text)
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with caplog.at_level(logging.WARNING):
        instrument(calibration_profile=str(path))
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert_identical(plain, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and named in warnings[0], warnings
    assert len(warnings[0].replace(str(path), "")) < MAX_WARNING_CHARS, warnings[0][:1000]
    a = telemetry.span().attributes
    assert sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE not in a and sc.COREVITAL_RISK_SCORE in a


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_INSTRUMENTATION_COREVITAL_CAPTURE", "everything"),
        ("OTEL_INSTRUMENTATION_COREVITAL_SERIES_MAX_POINTS", "0"),
        ("OTEL_INSTRUMENTATION_COREVITAL_STOP_ON", "repetition_loop;nan"),
        ("OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR", "/no/such/directory"),
        ("OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE", "/no/such/file.json"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "sometimes"),
        ("OTEL_INSTRUMENTATION_COREVITAL_EXPECTED_FAILURE_RATE", "1.5"),
        ("OTEL_INSTRUMENTATION_COREVITAL_EXPECTED_FAILURE_RATE", "often"),
    ],
)
def test_bad_environment_value(variable, value, monkeypatch, instrument, telemetry, caplog) -> None:
    monkeypatch.setenv(variable, value)
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with caplog.at_level(logging.WARNING):
        instrument()
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert_identical(plain, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and variable in warnings[0] and repr(value) in warnings[0], warnings
    assert "Using the default" in warnings[0]
    assert sc.COREVITAL_RISK_SCORE in telemetry.span().attributes


def test_shipped_profiles_load_without_a_warning(caplog) -> None:
    clear_caches()
    with caplog.at_level(logging.WARNING):
        profiles = load_profiles(None)
    assert caplog.records == []
    assert {"default", "llama", "gpt2", "qwen2", "mistral", "mixtral", "phi3"} <= set(profiles)


def test_a_bad_file_among_the_profiles_is_read_once_and_costs_no_other_model(
    tmp_path, instrument, telemetry, caplog, monkeypatch
) -> None:
    """A deeply nested YAML in another model's profile: one warning naming it, read once (not per
    call), every call keeps its read-out; a changed file is read again."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "gpt2.yaml").write_text("name: gpt2\nrepetition_ngram: " + "[" * 5_000 + "]" * 5_000)
    llama = directory / "llama.yaml"
    llama.write_text("name: llama\nrepetition_ngram: 9\n")
    load_profiles()  # the shipped profiles, read once per process
    parsed: list[str] = []
    real_parse = profiles.parse_yaml
    monkeypatch.setattr(profiles, "parse_yaml", lambda text: parsed.append(text[:12]) or real_parse(text))
    clear_caches()
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with caplog.at_level(logging.WARNING):
        instrument(profiles_dir=str(directory))
        outputs = [model.generate(**inputs, max_new_tokens=5, do_sample=False) for _ in range(5)]
    for out in outputs:
        assert_identical(plain, out)
    assert len(parsed) == 2, parsed  # each user file once, for instrument() and five calls
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(directory / "gpt2.yaml") in warnings[0], warnings
    spans = telemetry.spans()
    assert len(spans) == 5
    for span in spans:
        assert sc.COREVITAL_RISK_SCORE in span.attributes and sc.COREVITAL_ERROR_TYPE not in span.attributes
    assert load_profiles(str(directory))["llama"].repetition_ngram == 9

    llama.write_text("name: llama\nrepetition_ngram: 12\n")  # another size: another version
    model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert len(parsed) == 3, parsed
    assert load_profiles(str(directory))["llama"].repetition_ngram == 12
    assert len(parsed) == 3
    # the same size at once, perhaps within one timestamp tick: a recent file is read again (not
    # parsed again unless its text changed)
    llama.write_text("name: llama\nrepetition_ngram: 13\n")
    assert load_profiles(str(directory))["llama"].repetition_ngram == 13
    assert load_profiles(str(directory))["llama"].repetition_ngram == 13
    assert len(parsed) == 4


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_among_the_profiles_never_blocks(tmp_path, instrument, telemetry, caplog) -> None:
    directory = tmp_path / "profiles"
    directory.mkdir()
    os.mkfifo(directory / "llama.yaml")  # nobody writes to it: opening it for reading would block
    (directory / "folder.yaml").mkdir()
    clear_caches()
    model = tiny_models.llama()
    inputs = tiny_models.prompt()
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    result: list = []

    def call() -> None:
        instrument(profiles_dir=str(directory))
        result.append(model.generate(**inputs, max_new_tokens=5, do_sample=False))

    with caplog.at_level(logging.WARNING):
        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(timeout=120)
    assert not worker.is_alive(), "generate() blocked on a FIFO in profiles_dir"
    assert_identical(plain, result[0])
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert len(warnings) == 2, warnings
    assert str(directory / "folder.yaml") in warnings[0] and "a directory, not a regular file" in warnings[0]
    assert str(directory / "llama.yaml") in warnings[1] and "a FIFO, not a regular file" in warnings[1]
    assert sc.COREVITAL_RISK_SCORE in telemetry.span().attributes


def test_no_bad_file_stops_opentelemetry_instrument(tmp_path: Path) -> None:
    """Under ``opentelemetry-instrument``, every hostile file at once: ``instrument()`` still wraps
    ``generate`` (the distro would otherwise log "Failed to auto initialize" and run without
    telemetry), and each file gives its one warning."""
    command = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert command is not None, "opentelemetry-instrument comes with opentelemetry-instrumentation"
    calibration = tmp_path / "calibration.json"
    calibration.write_text("[" * 100_000 + "]" * 100_000)
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "gpt2.yaml").write_text("name: gpt2\nrepetition_ngram: " + "[" * 100_000 + "]" * 100_000)
    (directory / "llama.yaml").write_text("name: llama\nrisk_model: {split_output_tokens: .nan}\n")
    if hasattr(os, "mkfifo"):
        os.mkfifo(directory / "qwen2.yaml")
    app = (
        "from transformers.generation.utils import GenerationMixin as G\n"
        "print('wrapped', hasattr(G.generate, '__wrapped__'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
        OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE=str(calibration),
        OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR=str(directory),
    )  # fmt: skip
    done = subprocess.run(
        [command, sys.executable, "-c", app], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrapped True" in done.stdout, done.stderr[-3000:]
    assert "Failed to auto initialize" not in done.stderr and "Traceback" not in done.stderr, done.stderr[
        -3000:
    ]
    lines = [line for line in done.stderr.splitlines() if "CoreVital" in line]
    assert len(lines) == (4 if hasattr(os, "mkfifo") else 3), lines
    assert any(str(calibration) in line and "nests deeper than 32 levels" in line for line in lines), lines
    assert all(len(line) < 2 * MAX_WARNING_CHARS for line in lines), lines
