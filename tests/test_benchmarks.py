"""The benchmark scripts run end to end (numbers are reported, never asserted: rule 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> None:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def test_gpu_benchmark_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    run("gpu.py", "--dry-run", "--batches", "1,2", "--levels", "logits,attention", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["device"] == "cpu (dry run)"
    levels = [(row["batch"], row["level"]) for row in result["rows"]]
    assert levels == [(1, "logits"), (1, "attention"), (1, "accumulate (hand-written)"),
                      (2, "logits"), (2, "attention"), (2, "accumulate (hand-written)")]  # fmt: skip


def test_telemetry_volume_script(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common")
    out = tmp_path / "volume.json"
    run("telemetry_volume.py", "--tokens", "4,12", "--levels", "hidden", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["tokens"] for r in rows] == [4, 12] and all(r["span_bytes"] > 0 for r in rows)
