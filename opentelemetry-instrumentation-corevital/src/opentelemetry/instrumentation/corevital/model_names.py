"""The model's own name, for ``gen_ai.request.model`` (docs/semconv.md): a hub id when there is one,
never an install path (which differs between machines and would split one model into many series)."""

from __future__ import annotations

import json
import os
import threading
import weakref
from typing import Any

__all__ = ["model_name"]

_NAMES: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()
_NAMES_LOCK = threading.Lock()


def model_name(model: Any) -> str:
    """The model's own name, for ``gen_ai.request.model``; the rule (docs/semconv.md):

    1. a hub id given to ``from_pretrained`` (``HuggingFaceTB/SmolLM2-135M-Instruct``) is kept;
    2. for a local directory, the name it was saved under when it has one: the ``_name_or_path`` in
       its ``config.json`` when that is a hub id, else the GGUF metadata's ``general.name``;
    3. otherwise the directory's last component (never the install path, which differs between
       machines and would split one model into many metric series), else the class name.

    Resolved once per model object (and again if its ``name_or_path`` changes).
    """
    path = str(
        getattr(model, "name_or_path", None)
        or getattr(getattr(model, "config", None), "_name_or_path", "")
        or ""
    )
    try:
        cached = _NAMES.get(model)
    except TypeError:  # not weak-referenceable
        return _resolve_name(model, path)
    if cached is not None and cached[0] == path:
        return cached[1]
    name = _resolve_name(model, path)
    with _NAMES_LOCK:
        _NAMES[model] = (path, name)
    return name


def _is_local(text: str) -> bool:
    return os.path.isabs(text) or text.startswith((".", "~")) or os.path.isdir(text)


def _resolve_name(model: Any, path: str) -> str:
    config = getattr(model, "config", None)
    gguf_name = getattr(config, "_model_name_or_path", None)  # GGUF general.name (transformers sets it)
    if not path:
        return str(gguf_name) if isinstance(gguf_name, str) and gguf_name else type(model).__name__
    if not _is_local(path):
        return path
    saved = _saved_name(path)
    if saved:
        return saved
    if isinstance(gguf_name, str) and gguf_name.strip() and not _is_local(gguf_name):
        return gguf_name.strip()
    return os.path.basename(os.path.normpath(path)) or path


def _saved_name(directory: str) -> str | None:
    """The hub id a local directory's ``config.json`` records as ``_name_or_path``, if any."""
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as handle:
            saved = json.load(handle).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(saved, str) and saved.count("/") == 1 and not _is_local(saved):
        return saved
    return None
