"""The built wheel in a fresh virtual environment, driven by ``opentelemetry-instrument``.

This is the user's path: ``pip install`` the wheel and ``opentelemetry-distro``, then run a plain
transformers app under ``opentelemetry-instrument --traces_exporter console`` and read the spans it
prints. ``tox -e py3-tf5`` runs it (it installs torch and transformers into the new venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from opentelemetry.instrumentation.corevital import semconv as sc

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent(
    '''
    """Plain transformers app: two generate() calls on a tiny Llama, no OpenTelemetry code."""
    import json, sys
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(3, 64)} | {"<pad>": 0, "<s>": 1, "</s>": 2}
    backend = Tokenizer(WordLevel(vocab, unk_token="w3"))
    backend.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config).eval()
    counts = []
    for text in ["w10 w11 w12 w13", "w20 w21"]:
        inputs = tokenizer(text, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        counts.append([inputs["input_ids"].shape[1], out.shape[1] - inputs["input_ids"].shape[1]])
    print("COUNTS " + json.dumps(counts), file=sys.stderr)
    '''
)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def console_spans(stdout: str) -> list[dict]:
    decoder, spans, position = json.JSONDecoder(), [], 0
    while True:
        start = stdout.find("{", position)
        if start < 0:
            return spans
        span, position = decoder.raw_decode(stdout, start)
        spans.append(span)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("package")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(ROOT)])
    (wheel,) = (work / "dist").glob("*.whl")
    environment = work / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", f"{wheel}[instruments]", "torch==2.13.0",
         "transformers>=5,<6", "opentelemetry-distro"])  # fmt: skip
    return environment


def test_the_wheel_holds_the_runtime_only(fresh_venv: Path) -> None:
    """The package is what runs in users' processes: no demo loader, evaluation or repository
    material in it (those stay in the repository), and the shipped profiles are its package data."""
    site = (
        next((fresh_venv / "lib").glob("python3*/site-packages")) / "opentelemetry/instrumentation/corevital"
    )
    names = {path.relative_to(site).as_posix() for path in site.rglob("*") if "__pycache__" not in path.parts}
    assert "demo_model.py" not in names and not any(name.startswith(("eval", "tests")) for name in names)
    assert {"model_profiles/default.yaml", "model_profiles/llama.yaml"} <= names


def test_profiles_ship_in_the_wheel(fresh_venv: Path) -> None:
    code = textwrap.dedent(
        """
        from transformers import LlamaConfig, LlamaForCausalLM
        from opentelemetry.instrumentation.corevital import profiles as m
        print(sorted(m.load_profiles())); print(m._shipped_directory())
        model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2))
        profile = m.profile_for(model)
        print("selected", profile.name, profile.l2_explosion_multiplier)
        """
    )
    out = run([str(fresh_venv / "bin" / "python"), "-c", code], cwd=fresh_venv).stdout
    assert "'llama'" in out and "'default'" in out
    assert "site-packages/opentelemetry/instrumentation/corevital/model_profiles" in out
    assert "selected llama 10.0" in out  # the llama profile, not the default


def test_opentelemetry_instrument_prints_one_span_per_generate(fresh_venv: Path, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"OTEL_SERVICE_NAME": "package-test", "HF_HUB_OFFLINE": "1"})
    result = run(
        [str(fresh_venv / "bin" / "opentelemetry-instrument"), "--traces_exporter", "console",
         "--metrics_exporter", "none", "--logs_exporter", "none",
         str(fresh_venv / "bin" / "python"), str(app)],
        env=env, cwd=tmp_path,
    )  # fmt: skip
    counts = json.loads(result.stderr.split("COUNTS ", 1)[1].splitlines()[0])
    spans = [s for s in console_spans(result.stdout) if s["name"].startswith("text_completion")]
    assert len(spans) == 2
    for span, (input_tokens, output_tokens) in zip(spans, counts, strict=True):
        attributes = span["attributes"]
        assert span["kind"] == "SpanKind.INTERNAL"
        assert attributes[sc.GEN_AI_PROVIDER_NAME] == "huggingface"
        assert attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == input_tokens
        assert attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == output_tokens
        assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ["length"]
        assert attributes[sc.COREVITAL_CAPTURE_LEVEL] == "hidden"
        assert len(attributes[sc.COREVITAL_ENTROPY_SERIES]) == output_tokens
    assert "w10" not in result.stdout and "w20" not in result.stdout  # no prompt text by default


def instrument(fresh_venv: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``opentelemetry-instrument OPTIONS python app.py`` in the fresh venv, with a clean OTEL_ env."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"OTEL_SERVICE_NAME": "package-test", "HF_HUB_OFFLINE": "1"})
    command = [str(fresh_venv / "bin" / "opentelemetry-instrument"), *options,
               str(fresh_venv / "bin" / "python"), str(app)]  # fmt: skip
    return run(command, env=env, cwd=tmp_path)


def test_corevital_console_exporters_print_the_read_out_and_the_metrics(
    fresh_venv: Path, tmp_path: Path
) -> None:
    result = instrument(
        fresh_venv, tmp_path, "--traces_exporter", "corevital_console,console",
        "--metrics_exporter", "corevital_console", "--logs_exporter", "none",
    )  # fmt: skip
    counts = json.loads(result.stderr.split("COUNTS ", 1)[1].splitlines()[0])
    blocks = [b for b in result.stdout.split("\n\n") if b.startswith("== CoreVital: text_completion")]
    assert len(blocks) == 2
    for block, (input_tokens, output_tokens) in zip(blocks, counts, strict=True):
        assert f"tokens     {input_tokens} in, {output_tokens} out" in block
        assert "\nrisk       " in block and "\nnarrative  Risk is" in block
    # composable: the SDK's own console exporter printed the same two spans as JSON
    spans_part, table = result.stdout.split("== CoreVital metrics", 1)
    assert len([s for s in console_spans(spans_part) if s["name"].startswith("text_completion")]) == 2
    assert sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION in table and sc.METRIC_COREVITAL_RISK_SCORE in table
    assert result.stdout.rindex("== CoreVital: text_completion") < result.stdout.index("== CoreVital metrics")
    assert "Traceback" not in result.stderr and "Failed to" not in result.stderr


def test_corevital_command_is_installed(fresh_venv: Path) -> None:
    result = run([str(fresh_venv / "bin" / "corevital"), "calibrate", "--help"])
    assert "--prompts" in result.stdout and "--labels" in result.stdout and "``" not in result.stdout
