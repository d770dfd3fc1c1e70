"""Prompts a user would try first, on the real SmolLM2-135M with the shipped profile: what a new
user sees (risk, band, factors, flags) for a few right, wrong, looping and cut-short answers.

    python eval/examples.py

Greedy decoding, one torch thread, capture ``hidden``, the default expected failure rate; about a
minute on a 2-core machine. Prints one line per prompt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # demo_model: the demo's loader

#: (prompt, max_new_tokens): examples a user would try, plus the demo's looping prompt and sum.
PROMPTS = [
    ("What is the capital of France?", 64),
    ("What is 2 + 2?", 64),
    ("What is the chemical symbol for oxygen?", 64),
    ("What is the capital of Burkina Faso?", 64),
    ("List some colours.", 32),  # an open-ended reply cut by its token limit
    ("Write a short poem about the sky.", 64),
    ("Describe a cat who loves the sea in detail.", 64),
    ("What is 17 times 23?", 64),
]


def main() -> int:
    import torch
    from demo_model import DemoModelMissing, load_smollm2
    from opentelemetry.sdk.trace import TracerProvider

    from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor, health_reports

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    try:
        model, tokenizer = load_smollm2()
    except DemoModelMissing as exc:
        sys.exit(str(exc))
    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), capture="hidden")
    try:
        for prompt, budget in PROMPTS:
            inputs = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt",
                return_dict=True,
            )  # fmt: skip
            with health_reports() as reports:
                out = model.generate(**inputs, max_new_tokens=budget, do_sample=False)
            text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            assert reports.last is not None
            health = reports.last.sequences[0]
            print(
                f"{health.risk.score:.2f} {health.risk.band:8s} factors={health.risk.factors[:3]} "
                f"flags={health.flag_names} | {prompt} (max {budget}) -> {' '.join(text.split())[:80]}",
                flush=True,
            )
    finally:
        instrumentor.uninstrument()
    return 0


if __name__ == "__main__":
    sys.exit(main())
