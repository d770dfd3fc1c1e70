"""Telemetry volume: bytes of one exported span (OTLP protobuf) and events per generation, against
the number of generated tokens. It must stay bounded: series are downsampled, events mark moments.

    python benchmarks/telemetry_volume.py [--tokens 64,256,1024] [--out FILE]

Results go to ``--out`` (default ``benchmarks/out/telemetry-volume.json``, not tracked).

Runs on a tiny random Llama with SmolLM2-135M's layer count (30) and hidden size, so the per-layer
arrays have their real size, at every capture level, batch 1, default settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from transformers import LlamaConfig, LlamaForCausalLM

from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor

OUT_DIR = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", default="64,256,1024")
    parser.add_argument("--levels", default="logits,hidden,attention")
    parser.add_argument("--out", default=str(OUT_DIR / "telemetry-volume.json"), help="JSON results path")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = LlamaConfig(hidden_size=576, intermediate_size=64, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=512, max_position_embeddings=2048,
                         eos_token_id=2, pad_token_id=0)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CoreVitalInstrumentor()
    inputs = {
        "input_ids": torch.randint(3, 512, (1, 16)),
        "attention_mask": torch.ones(1, 16, dtype=torch.long),
    }
    rows = []
    for level in args.levels.split(","):
        instrumentor.instrument(tracer_provider=provider, capture=level)
        for tokens in (int(t) for t in args.tokens.split(",")):
            exporter.clear()
            model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            (span,) = exporter.get_finished_spans()
            size = len(encode_spans([span]).SerializeToString())
            rows.append({"level": level, "tokens": tokens, "span_bytes": size, "events": len(span.events),
                         "attributes": len(span.attributes)})  # fmt: skip
        instrumentor.uninstrument()
    result = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("| level | new tokens | span (OTLP bytes) | events | attributes |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['level']} | {r['tokens']} | {r['span_bytes']:,} | {r['events']} | {r['attributes']} |")
    print(f"(results: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
