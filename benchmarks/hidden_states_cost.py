"""The floor of the `hidden` capture level: what transformers itself charges for returning hidden
states, with CoreVital off. A forward pre-hook only sets ``output_hidden_states=True``; nothing is
summarised. Interleaved pairs on SmolLM2-135M, one torch thread.

    python benchmarks/hidden_states_cost.py [--tokens 64] [--pairs 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # demo_model: the demo's loader

import torch
from demo_model import load_smollm2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, tokenizer = load_smollm2()
    inputs = tokenizer("Write a long story about the sea.", return_tensors="pt")
    ask = {"hidden": False}

    def pre_hook(module, args, kwargs):  # type: ignore[no-untyped-def]
        if ask["hidden"]:
            kwargs["output_hidden_states"] = True
            return args, kwargs
        return None

    model.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def run(hidden: bool) -> float:
        ask["hidden"] = hidden
        started = time.perf_counter()
        model.generate(**inputs, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False)
        return time.perf_counter() - started

    run(False), run(True)  # warm-up (installs transformers' capture hooks)
    plain, hidden = [], []
    for _ in range(args.pairs):
        plain.append(run(False))
        hidden.append(run(True))
    ratio = statistics.median(h / p for h, p in zip(hidden, plain, strict=True))
    per_step = (statistics.median(hidden) - statistics.median(plain)) / args.tokens * 1e6
    times = (
        f"plain {statistics.median(plain):.3f} s, output_hidden_states only {statistics.median(hidden):.3f} s"
    )
    print(f"{times}: {100 * (ratio - 1):+.2f} %, {per_step:+.0f} µs per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
