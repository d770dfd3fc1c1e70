"""Run the evaluation sets through the real SmolLM2-135M *with the instrumentor on* and cache what a
user's telemetry would hold, so that scoring and fitting take seconds.

    python eval/generate.py --sets loops qa easy inject [--limit N] [--workers 2] [--cache eval/cache]

Every item is generated greedily (``max_new_tokens`` from the row, else 128), through
``CoreVitalInstrumentor`` with in-memory exporters. One JSON line per item is appended to
``<cache>/<set>.<worker>.jsonl``: the generated token ids and text, the span's CoreVital attributes
and events, the per-step series of the capture report and its projected middle-layer states
(``state_projection``, with the model's hidden size and layer count). Beside it,
``<cache>/arrays/<key>.npz`` keeps what the read-out needs to be replayed offline
(``eval/replay.py``): the per-step series, the per-step, per-layer hidden-state statistics
(``SequenceReport.hidden_layers``), the generated and the prompt token ids. Items already cached are
skipped, so an interrupted run resumes.

The ``inject`` set (``data/inject-dev.jsonl``) is the failure-injection set of the hidden-state
signals: easy prompts generated with NaN, +Inf or a large scale-up written into one decoder layer's
output by a forward hook, from a given step on (:func:`injection_hook`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # demo_model: the demo's loader
#: The development sets (eval/README.md), kept in this repository.
DATA = ROOT / "eval" / "data"
SETS = {
    "loops": DATA / "loops-dev.jsonl",
    "qa": DATA / "qa-dev.jsonl",
    "easy": DATA / "easy-dev.jsonl",
    "inject": DATA / "inject-dev.jsonl",
}
#: Side files with the arrays of each item (``<cache>/arrays/<key>.npz``).
ARRAYS = "arrays"
DEFAULT_MAX_NEW_TOKENS = 128
SERIES = (
    "entropy",
    "margin",
    "topk_mass",
    "top1_prob",
    "surprisal",
    "hidden.l2_norm",
    "hidden.cosine_previous",
    "hidden.max_similarity",
)


def item_key(row: dict[str, Any]) -> str:
    """A stable id of an item: its prompt, template and token budget (and its injection, if any)."""
    parts: list[Any] = [row["prompt"], row.get("chat", True), row.get("max_new_tokens")]
    if row.get("inject"):
        parts.append(row["inject"])
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def injection_hook(spec: dict[str, Any]) -> Any:
    """A forward hook for one decoder layer that corrupts the last position of its output from the
    forward ``spec["from_step"]`` on (step 0 is the prefill): ``nan`` and ``inf`` overwrite its
    first 8 values, ``scale`` multiplies it by ``spec["factor"]``. What a numerical bug in one layer
    (a bad kernel, an overflowing dtype) would look like to the signals. Register it with
    ``prepend=True``: transformers records the layer outputs with forward hooks of its own, installed
    at the first forward, and a hook that runs after them would corrupt what the next layer reads
    but not what is recorded."""
    state = {"step": -1}
    kind, start = spec["kind"], int(spec.get("from_step", 3))

    def hook(module: Any, args: Any, output: Any) -> Any:
        state["step"] += 1
        if state["step"] < start:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        if kind == "nan":
            hidden[:, -1, :8] = float("nan")
        elif kind == "inf":
            hidden[:, -1, :8] = float("inf")
        elif kind == "scale":
            hidden[:, -1, :] = hidden[:, -1, :] * float(spec["factor"])
        else:
            raise ValueError(f"unknown injection {kind!r}")
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


def save_arrays(path: Path, sequence: Any, tokens: list[int], prompt_tokens: list[int]) -> None:
    """What the read-out needs to replay one generation offline, compactly (float32 per-layer
    statistics: the capture computes them in float32, so nothing is lost)."""
    import numpy as np

    arrays: dict[str, Any] = {
        "tokens": np.asarray(tokens, dtype=np.int64),
        "prompt_tokens": np.asarray(prompt_tokens, dtype=np.int64),
    }
    for name, values in sequence.series.items():
        arrays[f"series/{name}"] = np.asarray(values, dtype=np.float64)
    for name, values in sequence.hidden_layers.items():
        arrays[f"hidden/{name}"] = np.asarray(values, dtype=np.float32)
    if sequence.state_projection is not None:
        arrays["state_projection"] = np.asarray(sequence.state_projection, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez_compressed(partial, **arrays)
    partial.replace(path)


def read_set(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The set's rows; with ``limit``, that many evenly spaced rows (so every task is represented)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not limit or limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def cached_keys(cache: Path, name: str) -> set[str]:
    keys = set()
    for shard in cache.glob(f"{name}.*.jsonl"):
        for line in shard.read_text().splitlines():
            try:
                keys.add(json.loads(line)["key"])
            except (ValueError, KeyError):
                continue
    return keys


def load_model() -> tuple[Any, Any]:
    from demo_model import DemoModelMissing, load_smollm2

    try:
        return load_smollm2()
    except DemoModelMissing as exc:
        sys.exit(str(exc))


def worker(name: str, rows: list[dict[str, Any]], shard: Path, capture: str) -> None:
    """Generate ``rows`` in this process (one torch thread) and append them to ``shard``."""
    import torch
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor, health_reports

    torch.set_num_threads(1)
    model, tokenizer = load_model()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(tracer_provider=provider, capture=capture)
    layers = model.model.layers
    try:
        with shard.open("a", encoding="utf-8") as sink:
            for row in rows:
                exporter.clear()
                spec = row.get("inject")
                handle = None
                if spec:
                    layer = layers[int(spec["layer"])]
                    handle = layer.register_forward_hook(injection_hook(spec), prepend=True)
                if row.get("chat", True):
                    messages = [{"role": "user", "content": row["prompt"]}]
                    inputs = tokenizer.apply_chat_template(
                        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
                    )
                else:
                    inputs = tokenizer(row["prompt"], return_tensors="pt")
                started = time.perf_counter()
                try:
                    with health_reports() as reports:
                        out = model.generate(
                            **inputs,
                            max_new_tokens=row.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
                            do_sample=False,
                        )
                finally:
                    if handle is not None:
                        handle.remove()
                seconds = time.perf_counter() - started
                tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
                (span,) = exporter.get_finished_spans()
                assert reports.last is not None
                capture = reports.last.capture
                sequence = capture.sequences[0]
                projection = sequence.state_projection
                l2 = sequence.hidden_layers.get("l2_norm")
                record = {
                    "key": item_key(row),
                    "row": row,
                    "tokens": tokens,
                    "prompt_tokens": inputs["input_ids"][0].tolist(),
                    "text": tokenizer.decode(tokens, skip_special_tokens=True),
                    "seconds": seconds,
                    "attributes": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in span.attributes.items()
                    },
                    "finish_reason": sequence.finish_reason,
                    "output_tokens": sequence.output_tokens,
                    "events": [{"name": e.name, **dict(e.attributes)} for e in span.events],
                    "series": {
                        k: [None if v != v else v for v in sequence.series[k].tolist()] for k in SERIES
                    },
                    "hidden_size": capture.hidden_size,
                    "model_class": type(model).__name__,
                    "model_type": model.config.model_type,
                    "vocab_size": model.config.vocab_size,
                    "layers": int(l2.shape[1]) if l2 is not None else 0,
                    "state_projection": (
                        None
                        if projection is None
                        else [[None if v != v else round(v, 6) for v in step] for step in projection.tolist()]
                    ),
                }
                prompt = inputs["input_ids"][0].tolist()
                save_arrays(shard.parent / ARRAYS / f"{record['key']}.npz", sequence, tokens, prompt)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                print(f"[{name} {shard.stem}] {len(tokens):3d} tokens in {seconds:5.1f} s", file=sys.stderr)
    finally:
        instrumentor.uninstrument()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sets", nargs="+", default=list(SETS), help="set names or JSONL paths")
    parser.add_argument("--limit", type=int, help="only N evenly spaced items of each set (quick mode)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / "eval" / "cache"))
    parser.add_argument("--capture", default="hidden")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for entry in args.sets:
        path = SETS.get(entry, Path(entry))
        name = entry if entry in SETS else path.stem
        done = cached_keys(cache, name)
        todo = [row for row in read_set(path, args.limit) if item_key(row) not in done]
        print(f"{name}: {len(todo)} to generate, {len(done)} cached", file=sys.stderr)
        if not todo:
            continue
        workers = max(1, min(args.workers, len(todo)))
        shards = [todo[i::workers] for i in range(workers)]
        jobs = [
            multiprocessing.get_context("spawn").Process(
                target=worker, args=(name, shard, cache / f"{name}.{i}.jsonl", args.capture)
            )
            for i, shard in enumerate(shards)
        ]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join()
            if job.exitcode:
                return int(job.exitcode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
