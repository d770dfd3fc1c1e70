"""The evaluation measures every signal by replaying the package's read-out on cached arrays
(eval/replay.py): the replay must give what the instrumentor gave live, and the failure-injection
hook must corrupt what the capture records."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eval import generate, replay

from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor, health_reports
from opentelemetry.instrumentation.corevital.profiles import profile_for
from tiny_models import llama, prompt


def shape_of(model: Any) -> replay.ModelShape:
    c = model.config
    name = type(model).__name__
    return replay.ModelShape(name, c.model_type, c.hidden_size, c.num_hidden_layers, c.vocab_size)


@pytest.mark.parametrize("kind", [None, "nan", "inf", "scale"])
def test_the_replayed_read_out_is_the_live_one(
    kind: str | None, instrument: Callable[..., CoreVitalInstrumentor], tmp_path: Path
) -> None:
    model = llama(num_hidden_layers=6)
    instrument(capture="hidden")
    handle = None
    if kind is not None:
        spec = {"kind": kind, "layer": 3, "from_step": 2, "factor": 1000.0}
        handle = model.model.layers[3].register_forward_hook(generate.injection_hook(spec), prepend=True)
    inputs = prompt()
    try:
        with health_reports() as reports:
            out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    finally:
        if handle is not None:
            handle.remove()
    live = reports.last
    assert live is not None
    sequence = live.capture.sequences[0]
    tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
    generate.save_arrays(tmp_path / "item.npz", sequence, tokens, inputs["input_ids"][0].tolist())

    arrays = replay.load_arrays(tmp_path / "item.npz")
    assert arrays is not None
    profile = profile_for(model)
    replayed = replay.read_out(arrays, sequence.finish_reason, live.capture.hidden_size, profile)
    assert replayed.primary.flag_names == live.primary.flag_names
    assert [(b.layer, b.reasons) for b in replayed.primary.blame] == [
        (b.layer, b.reasons) for b in live.primary.blame
    ]
    assert replayed.primary.narrative == live.primary.narrative
    assert replayed.primary.risk.score == pytest.approx(live.primary.risk.score)
    assert replay.shipped_profile(shape_of(model)).name == profile.name
    # what the capture recorded is the corrupted output of layer 3 (the evaluation runs transformers 5;
    # 4.5x hands out each layer's output one index later)
    if kind is not None and not transformers.__version__.startswith("4."):
        field = {"nan": "nan_count", "inf": "inf_count", "scale": "l2_norm"}[kind]
        recorded = arrays.hidden[field]
        before, after = recorded[:2, 3], recorded[2:, 3]
        if kind == "scale":
            assert after.min() > 100 * before.max()
        else:
            assert before.sum() == 0 and (after == 8).all()
        assert torch.isfinite(out).all()  # token ids: the generation itself went on
