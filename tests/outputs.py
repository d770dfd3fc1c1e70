"""Deep comparison of generate() return values."""

from __future__ import annotations

from typing import Any

import torch


def assert_identical(plain: Any, instrumented: Any, path: str = "result") -> None:
    """Same type, same fields, bit-identical tensors, recursively."""
    assert type(plain) is type(instrumented), f"{path}: {type(plain)} != {type(instrumented)}"
    if isinstance(plain, torch.Tensor):
        assert plain.shape == instrumented.shape, f"{path}: shape {plain.shape} != {instrumented.shape}"
        assert plain.dtype == instrumented.dtype, f"{path}: dtype"
        assert torch.equal(plain, instrumented), f"{path}: values differ"
    elif isinstance(plain, dict):
        assert list(plain.keys()) == list(instrumented.keys()), (
            f"{path}: keys {list(plain)} != {list(instrumented)}"
        )
        for key in plain:
            assert_identical(plain[key], instrumented[key], f"{path}.{key}")
        for key in ("hidden_states", "attentions", "scores", "logits", "decoder_hidden_states"):
            if hasattr(plain, key):
                assert_identical(getattr(plain, key), getattr(instrumented, key), f"{path}.{key}")
    elif isinstance(plain, (tuple, list)):
        assert len(plain) == len(instrumented), f"{path}: length {len(plain)} != {len(instrumented)}"
        for i, (a, b) in enumerate(zip(plain, instrumented, strict=True)):
            assert_identical(a, b, f"{path}[{i}]")
    elif isinstance(plain, (int, float, str, bool)) or plain is None:
        assert plain == instrumented, f"{path}: {plain!r} != {instrumented!r}"
    # Other objects (caches) are compared by type only.
