"""GPU benchmark: CoreVital's time and memory overhead on a ~1B-parameter model in fp16/bf16.

    python benchmarks/gpu.py                 # on a CUDA machine (out/gpu-<device>.json)
    python benchmarks/gpu.py --dry-run       # anywhere: the same code path on a tiny model on CPU

A dry run measures nothing: it checks that every step runs, and says so. Results go to ``--out``
(default ``benchmarks/out/``, not tracked).

The model is a Llama with TinyLlama-1.1B's shape built from a config with random weights, so no
download is needed; random weights generate meaningless text at the real cost. For each batch size
and capture level: warm-up, then interleaved pairs (plain, instrumented, plain, …) of ``generate``
with a fixed number of new tokens; the ratio of medians is the time overhead and
``torch.cuda.max_memory_allocated`` (reset before each call) the peak memory. The hand-written
alternative (``output_hidden_states`` + ``output_attentions`` + ``return_dict_in_generate``, eager
attention) is measured beside it. The script reports; it never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from opentelemetry.sdk.trace import TracerProvider
from transformers import LlamaConfig, LlamaForCausalLM

from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor

OUT_DIR = Path(__file__).resolve().parent / "out"
ONE_B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
             num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096)  # fmt: skip
ACCUMULATE = "accumulate (hand-written)"
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, max_position_embeddings=512)  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def timed(fn: Any, device: torch.device) -> tuple[float, float]:
    peak_reset(device)
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started, peak_mib(device)


def accumulate(model: Any, inputs: dict[str, torch.Tensor], tokens: int) -> None:
    """What a user would write by hand: keep every step's internals, then summarise them."""
    out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                         output_hidden_states=True, output_attentions=True, output_scores=True,
                         return_dict_in_generate=True)  # fmt: skip
    for scores, hidden, attentions in zip(out.scores, out.hidden_states, out.attentions, strict=False):
        p = torch.softmax(scores.float(), -1)
        _ = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
        _ = torch.stack([h[:, -1].float().norm(dim=-1) for h in hidden[1:]])
        _ = torch.stack(
            [
                (-(a[:, :, -1].float().clamp_min(1e-30).log() * a[:, :, -1].float()).sum(-1))
                for a in attentions
            ]
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dry-run", action="store_true", help="tiny model on CPU: checks the code path")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--levels", default="logits,hidden,attention")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--out", help="JSON results path (default results/gpu-<device>.json)")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, dtype, shape, tokens, pairs = torch.device("cpu"), torch.float32, TINY, 8, 2
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
        shape, tokens, pairs = ONE_B, args.tokens, args.pairs
    else:
        print("no CUDA device: run with --dry-run to check the code path on CPU", file=sys.stderr)
        return 0
    torch.manual_seed(0)
    config = LlamaConfig(**shape, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    parameters = sum(p.numel() for p in model.parameters())
    instrumentor = CoreVitalInstrumentor()
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        generator = torch.Generator().manual_seed(batch)
        ids = torch.randint(3, config.vocab_size, (batch, 32), generator=generator).to(device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def plain(inputs: dict[str, torch.Tensor] = inputs) -> Any:
            return model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)

        for level in args.levels.split(","):
            instrumentor.instrument(tracer_provider=TracerProvider(), capture=level)
            instrumentor.uninstrument()
            for _ in range(2):  # warm-up of both paths
                plain()
                instrumentor.instrument(tracer_provider=TracerProvider(), capture=level)
                plain()
                instrumentor.uninstrument()
            times: dict[str, list[float]] = {"plain": [], "instrumented": []}
            peaks: dict[str, list[float]] = {"plain": [], "instrumented": []}
            for _ in range(pairs):
                t, m = timed(plain, device)
                times["plain"].append(t)
                peaks["plain"].append(m)
                instrumentor.instrument(tracer_provider=TracerProvider(), capture=level)
                t, m = timed(plain, device)
                instrumentor.uninstrument()
                times["instrumented"].append(t)
                peaks["instrumented"].append(m)
            ratios = [i / p for i, p in zip(times["instrumented"], times["plain"], strict=True)]
            rows.append({
                "batch": batch, "level": level, "tokens": tokens, "pairs": pairs,
                "plain_s": statistics.median(times["plain"]),
                "instrumented_s": statistics.median(times["instrumented"]),
                "overhead_pct": 100 * (statistics.median(ratios) - 1),
                "plain_peak_mib": max(peaks["plain"]), "instrumented_peak_mib": max(peaks["instrumented"]),
            })  # fmt: skip
        eager = getattr(model.config, "_attn_implementation", None)
        model.set_attn_implementation("eager")
        t, m = timed(lambda inputs=inputs: accumulate(model, inputs, tokens), device)
        if eager:
            model.set_attn_implementation(eager)
        rows.append({"batch": batch, "level": ACCUMULATE, "tokens": tokens, "pairs": 1,
                     "plain_s": None, "instrumented_s": t, "overhead_pct": None,
                     "plain_peak_mib": None, "instrumented_peak_mib": m})  # fmt: skip
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    if args.dry_run:
        rows = [{key: row[key] for key in ("batch", "level", "tokens", "pairs")} for row in rows]
    result = {
        "device": device_name, "dtype": str(dtype), "parameters": parameters, "dry_run": args.dry_run,
        "command": " ".join(sys.argv), "torch": torch.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"), "rows": rows,
    }  # fmt: skip
    out = (
        Path(args.out)
        if args.out
        else OUT_DIR / f"gpu-{'dry-run' if args.dry_run else device_name.replace(' ', '_')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(dry_run_report(result) if args.dry_run else table(result))
    print(f"(results: {out})")
    return 0


def count(n: int) -> str:
    """A parameter count in words a reader can compare: ``106816`` -> ``"107 K"``.

    >>> count(106816), count(1_100_048_384), count(134_515_008)
    ('107 K', '1.10 B', '135 M')
    """
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.0f} M"
    return f"{n / 1e3:.0f} K" if n >= 1e3 else str(n)


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None or value != value else format(value, spec)


def table(result: dict[str, Any]) -> str:
    """The measurements as a Markdown table ("—" where a column does not apply)."""
    lines = [
        f"{result['device']}, {result['dtype']}, {count(result['parameters'])} parameters, "
        f"{result['rows'][0]['tokens']} new tokens",
        "| batch | level | plain (s) | instrumented (s) | overhead | peak plain (MiB) | peak instr. (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        overhead = "—" if r["overhead_pct"] is None else f"{r['overhead_pct']:+.1f}%"
        cells = [
            str(r["batch"]), r["level"], _cell(r["plain_s"], ".3f"), _cell(r["instrumented_s"], ".3f"),
            overhead, _cell(r["plain_peak_mib"], ".0f"), _cell(r["instrumented_peak_mib"], ".0f"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dry_run_report(result: dict[str, Any]) -> str:
    """What a dry run checked; it reports no figures, because a tiny CPU model's timings say nothing
    about CoreVital's cost on a GPU."""
    batches: dict[int, list[str]] = {}
    for row in result["rows"]:
        batches.setdefault(row["batch"], []).append(row["level"])
    ran = "; ".join(f"batch {batch}: {', '.join(levels)}" for batch, levels in batches.items())
    return (
        "dry run: no measurements.\n"
        f"Every step ran end to end on a tiny random Llama ({count(result['parameters'])} parameters, "
        f"{result['dtype']}, CPU, {result['rows'][0]['tokens']} new tokens) - {ran}.\n"
        "For figures, run without --dry-run on a CUDA machine."
    )


if __name__ == "__main__":
    sys.exit(main())
