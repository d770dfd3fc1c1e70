"""The ``corevital`` command: its help reads as plain text and describes both calibrate modes; bad
input gives one line naming the problem and exit status 2, never a traceback; saved runs are reused
only for the same prompts file, model and token limit; the environment is left alone."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opentelemetry.instrumentation.corevital import cli
from opentelemetry.instrumentation.corevital.signals.risk import RISK_FEATURES


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
    partial = tmp_path / "out.yaml.partial.jsonl"
    key = cli.resume_key(b"p\n", "model", None, 8)
    rows = [
        {"index": 0, "key": key, "features": [0.0] * len(RISK_FEATURES)},
        {"index": 1, "key": key, "features": [0.0] * (len(RISK_FEATURES) - 1)},  # an older version's
        {"index": 2, "key": key, "series": {}},  # a --prompts run: no features
        {"index": 3, "key": cli.resume_key(b"other prompts\n", "model", None, 8), "series": {}},
        {"index": 4, "series": {}},  # saved before runs carried a key
        {"index": 9, "key": key, "series": {}},  # past the end of the prompts
    ]
    partial.write_text("\n".join(json.dumps(r) for r in rows) + "\n{cut")
    assert sorted(cli.done_runs(partial, key, prompts=5)) == [0, 2]
    assert sorted(json.loads(line)["index"] for line in partial.read_text().splitlines()) == [0, 2]


def test_resume_key_follows_the_prompts_model_and_token_limit() -> None:
    key = cli.resume_key(b"a\nb\n", "m", None, 64)
    assert key == cli.resume_key(b"a\nb\n", "m", None, 64)
    others = [
        cli.resume_key(b"a\nc\n", "m", None, 64),
        cli.resume_key(b"a\nb\n", "n", None, 64),
        cli.resume_key(b"a\nb\n", "m", "x.gguf", 64),
        cli.resume_key(b"a\nb\n", "m", None, 32),
    ]
    assert key not in others and len(set(others)) == len(others)


# -- bad input: one line, exit status 2 -------------------------------------------------------------
@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a model folder (config.json only), a model file, a prompts file, a binary file
    and a folder; the command runs in it."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "empty-model").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)
    (tmp_path / "prompts.txt").write_text("one prompt\nanother\n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": 3}\n')
    (tmp_path / "deep.jsonl").write_text('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    (tmp_path / "unlabelled.jsonl").write_text('{"prompt": "a"}\n')
    (tmp_path / "folder").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


GOOD = {"--model": "model", "--prompts": "prompts.txt", "--out": "out.json"}

# (case, options that replace GOOD's, extra arguments, words the line must hold)
BAD_INPUTS = [
    ("missing model folder", {"--model": "./no-such-model"}, [], ["--model ./no-such-model: no such folder"]),
    ("model path is a file", {"--model": "weights.bin"}, [], ["--model weights.bin is a file, not a model"]),
    ("model folder without config", {"--model": "empty-model"}, [], ["no config.json"]),
    ("missing GGUF file", {}, ["--gguf-file", "x.gguf"], ["--gguf-file x.gguf: no such file in model"]),
    ("missing prompts file", {"--prompts": "no-such.txt"}, [], ["--prompts no-such.txt: no such file"]),
    ("prompts path is a folder", {"--prompts": "folder"}, [], ["--prompts folder is a folder"]),
    ("binary prompts file", {"--prompts": "binary.txt"}, [], ["--prompts binary.txt is a binary file"]),
    ("prompts not UTF-8", {"--prompts": "latin1.txt"}, [], ["--prompts latin1.txt is not UTF-8 text"]),
    ("no prompts", {"--prompts": "empty.txt"}, [], ["--prompts empty.txt: no prompts"]),
    ("bad JSON line", {"--prompts": "bad.jsonl"}, [], ["bad.jsonl:2: a JSON line needs a string 'prompt'"]),
    ("deeply nested JSON line", {"--prompts": "deep.jsonl"}, [], ["deep.jsonl:1: not valid JSON"]),
    ("labels without labels", {"--prompts": None, "--labels": "unlabelled.jsonl"}, [], ["needs a 0/1"]),
    ("missing output folder", {"--out": "nowhere/out.json"}, [], ["the folder nowhere does not exist"]),
    ("output path is a folder", {"--out": "folder"}, [], ["--out folder is a folder"]),
    ("zero new tokens", {}, ["--max-new-tokens", "0"], ["--max-new-tokens", "at least 1, not 0"]),
    ("negative new tokens", {}, ["--max-new-tokens", "-3"], ["--max-new-tokens", "at least 1, not -3"]),
    ("state features without labels", {}, ["--state-features"], ["--state-features", "needs --labels"]),
    ("model that cannot be loaded", {}, [], ["--model model: cannot load the model"]),
]  # fmt: skip


def arguments(options: dict[str, str | None], extra: list[str]) -> list[str]:
    merged = {**GOOD, **options}
    return ["calibrate", *[part for o, v in merged.items() if v is not None for part in (o, v)], *extra]


@pytest.mark.parametrize(("case", "options", "extra", "words"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_status_2(
    case, options, extra, words, workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(arguments(options, extra))
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("corevital calibrate: error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (workspace / "out.json").exists()


def test_the_installed_command_prints_no_traceback(workspace: Path) -> None:
    """The same through the real entry point, in a process of its own: the last line only."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    for options, extra, words in [
        ({"--model": "./no-such-model"}, [], "no such folder"),
        ({}, ["--max-new-tokens", "-3"], "at least 1, not -3"),
        ({}, [], "cannot load the model"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "opentelemetry.instrumentation.corevital.cli", *arguments(options, extra)],
            env=env, cwd=workspace, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert words in lines[-1] and lines[-1].startswith("corevital calibrate: error: "), lines


def test_the_command_leaves_hf_hub_offline_to_the_environment(workspace, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(SystemExit):
        cli.main(arguments({}, []))  # loads transformers, then fails on the empty config
    assert "HF_HUB_OFFLINE" not in os.environ


def environment_writes(source: str) -> list[str]:
    """The statements of ``source`` that set, change or remove an environment variable."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            if (owner.endswith("environ") and node.func.attr in ENVIRON_WRITES) or node.func.attr in {
                "putenv",
                "unsetenv",
            }:
                found.append(ast.unparse(node))
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else []
        if isinstance(node, ast.AugAssign):
            targets = [node.target]
        found += [
            ast.unparse(t)
            for t in targets
            if isinstance(t, ast.Subscript) and ast.unparse(t.value).endswith("environ")
        ]
    return sorted(found)


ENVIRON_WRITES = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def test_the_runtime_package_never_writes_the_environment() -> None:
    """No module of the package sets, changes or removes an environment variable: that is the
    application's, the demo's and the test runner's business."""
    assert environment_writes("import os\nos.environ['B'] = '2'\nos.environ.setdefault('A', '1')\n") == [
        "os.environ.setdefault('A', '1')",
        "os.environ['B']",
    ]
    package = Path(cli.__file__).parent
    writes = {
        str(path.relative_to(package)): environment_writes(path.read_text(encoding="utf-8"))
        for path in sorted(package.rglob("*.py"))
    }
    assert {name: found for name, found in writes.items() if found} == {}


def test_changed_prompts_never_reuse_saved_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Twelve runs saved for an older labels file, then a six-line one: the old runs are dropped
    (they would be fitted with the new labels, or past its end: an IndexError), the six are made."""
    import tiny_models
    from tiny_tokenizer import tiny_tokenizer

    model = tmp_path / "tiny-llama"
    tiny_models.llama().save_pretrained(model)
    tiny_tokenizer().save_pretrained(model)
    old = b"".join(json.dumps({"prompt": f"w{i}", "label": i % 2}).encode() + b"\n" for i in range(12))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "\n".join(json.dumps({"prompt": f"w{10 + i} w{20 + i}", "label": i % 2}) for i in range(6))
    )
    out = tmp_path / "llama.yaml"
    partial = tmp_path / "llama.yaml.partial.jsonl"
    saved = {"features": [0.0] * len(RISK_FEATURES), "state_mean": [0.0] * 32, "probe_shape": [0, 0]}
    key = cli.resume_key(old, str(model), None, 64)
    partial.write_text("".join(json.dumps({"index": i, "key": key, **saved}) + "\n" for i in range(12)))
    assert cli.main(["calibrate", "--model", str(model), "--labels", str(labels), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "12 saved run(s)" in err and "from 6 runs" in err, err
    assert out.exists() and not partial.exists()


def test_state_features_need_labels(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
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
    assert exited.value.code == 2
    assert "needs --labels" in capsys.readouterr().err
