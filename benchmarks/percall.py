"""CoreVital's own cost per call and per decoding step, on a tiny model where it is most visible.

    python benchmarks/percall.py [--repeats 41] [--levels logits,hidden,attention] [--clock cpu] [--out FILE]

A tiny Llama (4 layers, hidden size 32, vocabulary 96) generates 1 and 33 tokens (greedy, forced
length, batch 1, one torch thread). Calls are interleaved — plain, floor, instrumented, in turn — so
that drifts of the machine hit all three alike; the figures are medians over ``--repeats`` rounds.
Times are the calling thread's CPU time by default (``--clock cpu``): with one torch thread, the
model and CoreVital (hooks, read-out, span export, metric recording) all run on that thread, and the
figure does not move when other processes load the machine; ``--clock wall`` measures elapsed time.

- *fixed cost per call* = instrumented − plain at 1 token, minus one step's cost;
- *per-step cost* = the slope from 1 to 33 tokens, instrumented − plain;
- *floor*: a plain ``generate`` whose forwards are asked for what the level needs
  (``output_hidden_states`` / ``output_attentions``, eager attention) — transformers' own cost of
  producing the tensors, which CoreVital cannot avoid; *CoreVital's own per-step cost* is the
  instrumented slope minus the floor's.

Results go to ``--out`` (JSON: machine, versions, commit; default ``benchmarks/out/percall.json``) and a
table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

import tiny_models  # noqa: E402
from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor  # noqa: E402

SHORT, LONG = 1, 33
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
CLOCK = CLOCKS["cpu"]


class Discard(SpanExporter):
    """Ends every span the way a real pipeline would, without keeping them."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def floor_hook(level: str) -> Any:
    """A forward pre-hook asking for what ``level`` captures, as CoreVital's own hook does."""

    def ask(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if level != "logits":
            kwargs["output_hidden_states"] = True
        if level == "attention":
            kwargs["output_attentions"] = True
        return args, kwargs

    return ask


def measure(level: str, repeats: int) -> dict[str, float]:
    model = tiny_models.llama()
    inputs = tiny_models.prompt()

    def call(tokens: int) -> float:
        started = CLOCK()
        model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return CLOCK() - started

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor = CoreVitalInstrumentor()
    samples: dict[str, dict[int, list[float]]] = {
        k: {SHORT: [], LONG: []} for k in ("plain", "floor", "ours")
    }
    for round_ in range(repeats + 3):
        for tokens in (SHORT, LONG):
            samples["plain"][tokens].append(call(tokens))
            handle = model.register_forward_pre_hook(floor_hook(level), with_kwargs=True)
            if level == "attention":
                model.set_attn_implementation("eager")
            samples["floor"][tokens].append(call(tokens))
            handle.remove()
            if level == "attention":
                model.set_attn_implementation("sdpa")
            instrumentor.instrument(tracer_provider=provider, meter_provider=meters, capture=level)
            samples["ours"][tokens].append(call(tokens))
            instrumentor.uninstrument()
        if round_ < 3:  # warm-up rounds are dropped
            for kind in samples.values():
                for values in kind.values():
                    values.clear()
    median = {k: {t: statistics.median(v) for t, v in d.items()} for k, d in samples.items()}

    def slope(kind: str) -> float:
        return (median[kind][LONG] - median[kind][SHORT]) / (LONG - SHORT)

    ours_step = slope("ours") - slope("plain")
    floor_step = slope("floor") - slope("plain")
    return {
        "model_step_us": slope("plain") * 1e6,
        "per_step_us": ours_step * 1e6,
        "floor_step_us": floor_step * 1e6,
        "own_step_us": (ours_step - floor_step) * 1e6,
        "fixed_us": (median["ours"][SHORT] - median["plain"][SHORT] - ours_step) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--levels", default="logits,hidden,attention")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "percall.json"))
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="cpu",
        help="cpu: the calling thread's CPU time (with one torch thread every operation runs on it; "
        "robust to other load on the machine); wall: elapsed time",
    )  # fmt: skip
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {level: measure(level, args.repeats) for level in args.levels.split(",")}
    header = ("level", "fixed/call", "per step", "floor", "own/step", "model/step")
    print(
        f"{header[0]:10s} {header[1]:>11s} {header[2]:>9s} {header[3]:>8s} {header[4]:>9s} {header[5]:>11s}"
    )
    for level, r in results.items():
        print(
            f"{level:10s} {r['fixed_us']:9.0f}us {r['per_step_us']:7.0f}us {r['floor_step_us']:6.0f}us "
            f"{r['own_step_us']:7.0f}us {r['model_step_us']:9.0f}us"
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    record = {
        "command": "python benchmarks/percall.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": __import__("transformers").__version__},
        "commit": commit.stdout.strip(),
        "repeats": args.repeats,
        "clock": args.clock,
        "results": results,
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
