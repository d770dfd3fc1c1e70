"""The benchmark scripts run end to end (numbers are reported, never asserted: rule 4)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_gpu_benchmark_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    stdout = run("gpu.py", "--dry-run", "--batches", "1,2", "--levels", "logits,attention", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["device"] == "cpu (dry run)" and result["dry_run"] is True
    # A dry run on a tiny CPU model measures nothing, and says so instead of printing figures.
    assert stdout.startswith("dry run: no measurements.")
    assert "nan" not in stdout and "%" not in stdout and "0.00 B" not in stdout
    assert all("overhead_pct" not in row for row in result["rows"])
    levels = [(row["batch"], row["level"]) for row in result["rows"]]
    assert levels == [(1, "logits"), (1, "attention"), (1, "accumulate (hand-written)"),
                      (2, "logits"), (2, "attention"), (2, "accumulate (hand-written)")]  # fmt: skip


def test_telemetry_volume_script(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common")
    out = tmp_path / "volume.json"
    run("telemetry_volume.py", "--tokens", "4,12", "--levels", "hidden", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["tokens"] for r in rows] == [4, 12] and all(r["span_bytes"] > 0 for r in rows)


def load(script: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"benchmarks_{Path(script).stem}", BENCHMARKS / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_table_shows_a_dash_where_a_column_does_not_apply() -> None:
    gpu = load("gpu.py")
    row = {"batch": 8, "tokens": 256, "pairs": 7, "plain_peak_mib": 2300.4, "instrumented_peak_mib": 2310.0}
    result = {"device": "NVIDIA H200", "dtype": "torch.bfloat16", "parameters": 1_100_048_384, "rows": [
        {**row, "level": "hidden", "plain_s": 2.0, "instrumented_s": 2.1, "overhead_pct": 5.0},
        {**row, "level": gpu.ACCUMULATE, "plain_s": None, "instrumented_s": 3.0, "overhead_pct": None,
         "plain_peak_mib": None},
    ]}  # fmt: skip
    text = gpu.table(result)
    assert "1.10 B parameters" in text and "nan" not in text
    assert "| 8 | hidden | 2.000 | 2.100 | +5.0% | 2300 | 2310 |" in text
    assert f"| 8 | {gpu.ACCUMULATE} | — | 3.000 | — | — | 2310 |" in text


def test_benchmark_runs_write_only_to_the_folder_they_are_given(tmp_path: Path) -> None:
    runner = load("run.py")
    for plan, steps in runner.plans(tmp_path).items():
        outputs = [Path(step[step.index("--out") + 1]) for step in steps]
        assert all(path.parent == tmp_path for path in outputs), plan
        assert len(set(outputs)) == len(outputs), plan
    assert runner.DEFAULT_OUT.name == "out"  # git-ignored, never benchmarks/results/
