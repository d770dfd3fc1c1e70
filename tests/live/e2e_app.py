"""The instrumented application of the live tests (``tests/live/test_e2e_observability.py``); not a test.

It runs under ``opentelemetry-instrument`` (Prometheus metrics exporter, OTLP trace exporter: the
test sets the ``OTEL_*`` environment) and makes every kind of generation the dashboards show:

- the real SmolLM2-135M-Instruct on a healthy batch of two prompts;
- SmolLM2 on a prompt it loops on under greedy decoding ("Describe a cat who loves the sea in
  detail."), which ``stop_on=repetition_loop`` (from the environment) stops;
- a tiny Llama with NaN injected into a middle layer at one step;
- a tiny Llama whose forward raises, so a call fails with ``error.type``.

Every model reports a name with ``.``, ``/``, ``-`` and ``:`` in ``gen_ai.request.model`` (set as
the model's ``name_or_path``, which CoreVital keeps when it is not a local path), so the dashboards'
filters are proven on such names: SmolLM2 as ``HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1.gguf``
(what it is: the Q4_1 GGUF of that model), the tiny models as ``corevital-e2e/tiny-llama-3.1:…``.
The NaN model's spans also meet a span processor that raises when a span ends: CoreVital catches
that (its own write of the span failed), so ``corevital.internal_errors`` counts one per call.

It does this in rounds: after each round it flushes the spans, prints ``round <n> done`` and waits
for a line on stdin before the next one (counters must rise between two scrapes for ``rate()`` to
see them). After the last round it keeps serving metrics until stdin closes. Every span the SDK
exported is also written to ``--spans`` (one JSON object a line), so the test knows what was sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tiny_models
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))  # demo_model

import tiny_models
from opentelemetry.instrumentation.corevital import semconv as sc

HEALTHY_PROMPTS = ["What is the capital of France?", "What is 2 + 2?"]
LOOPING_PROMPT = "Describe a cat who loves the sea in detail."  # tests/real_model/test_real_model_signals.py
NAN_STEP, NAN_LAYER = 3, 2
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1.gguf"
NAN_MODEL_NAME = "corevital-e2e/tiny-llama-3.1:nan"
FAILING_MODEL_NAME = "corevital-e2e/tiny-llama-3.1:raises"


class SpanProcessorFailure(RuntimeError):
    """What the broken span processor raises (its class name is the internal error's type)."""


class BrokenOnEnd(SpanProcessor):
    """A span processor that raises when a span of one model ends (after the exporters got it)."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def on_end(self, span: ReadableSpan) -> None:
        if (span.attributes or {}).get(sc.GEN_AI_REQUEST_MODEL) == self.model_name:
            raise SpanProcessorFailure("span processor failed")


def value(item: Any) -> Any:
    """An attribute value as JSON can carry it (sequences as lists; NaN/Inf kept as Python writes them)."""
    return list(item) if isinstance(item, (tuple, list)) else item


def finite(item: Any) -> bool:
    """Whether an attribute value holds no NaN or ±Inf."""
    items = item if isinstance(item, (tuple, list)) else [item]
    return all(math.isfinite(x) for x in items if isinstance(x, float))


def span_record(span: ReadableSpan) -> str:
    """One exported span as a JSON line: what the SDK handed to the exporters."""
    context = span.get_span_context()
    record = {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "attributes": {key: value(item) for key, item in (span.attributes or {}).items()},
        "events": [
            {"name": event.name, "attributes": {k: value(v) for k, v in (event.attributes or {}).items()}}
            for event in span.events
        ],
        "dropped_attributes": span.dropped_attributes,
        "dropped_events": span.dropped_events,
        "non_finite": sorted(
            key
            for key, item in (span.attributes or {}).items()
            if any(
                isinstance(x, float) and not math.isfinite(x)
                for x in (item if isinstance(item, tuple) else [item])
            )
        ),
    }
    return json.dumps(record) + "\n"


def smollm2() -> tuple[Any, Any]:
    from demo_model import load_smollm2

    model, tokenizer = load_smollm2()
    tokenizer.padding_side = "left"
    model.name_or_path = SMOLLM2_NAME
    return model, tokenizer


def chat(tokenizer: Any, prompts: list[str]) -> Any:
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


class Steps:
    """Counts the forwards (decoding steps) of the current generate() call."""

    def __init__(self) -> None:
        self.step = -1

    def pre_hook(self, module: Any, args: Any) -> None:
        self.step += 1


def nan_model() -> tuple[Any, Steps]:
    """A tiny Llama whose middle layer outputs NaN at one decoding step."""
    model = tiny_models.llama(num_hidden_layers=6)
    model.name_or_path = NAN_MODEL_NAME
    steps = Steps()
    model.register_forward_pre_hook(steps.pre_hook)

    def poison(module: Any, args: Any, output: Any) -> Any:
        if steps.step != NAN_STEP:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        nan = torch.full_like(hidden, float("nan"))
        return (nan, *output[1:]) if isinstance(output, tuple) else nan

    model.model.layers[NAN_LAYER].register_forward_hook(poison)
    return model, steps


def failing_model() -> tuple[Any, Steps]:
    """A tiny Llama whose forward raises at the second decoding step."""
    model = tiny_models.llama()
    model.name_or_path = FAILING_MODEL_NAME
    steps = Steps()
    model.register_forward_pre_hook(steps.pre_hook)

    def fail(module: Any, args: Any) -> None:
        if steps.step == 1:
            raise RuntimeError("injected failure")

    model.register_forward_pre_hook(fail)
    return model, steps


def one_round(model: Any, tokenizer: Any, nan: tuple[Any, Steps], failing: tuple[Any, Steps]) -> None:
    healthy = chat(tokenizer, HEALTHY_PROMPTS)
    model.generate(**healthy, max_new_tokens=24, do_sample=False, tokenizer=tokenizer)
    looping = chat(tokenizer, [LOOPING_PROMPT])
    model.generate(**looping, max_new_tokens=96, do_sample=False, tokenizer=tokenizer)
    tiny, steps = nan
    steps.step = -1
    tiny.generate(**tiny_models.prompt(), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    broken, steps = failing
    steps.step = -1
    # The failed call is the point: CoreVital records error.type and re-raises.
    with contextlib.suppress(RuntimeError):
        broken.generate(**tiny_models.prompt(), max_new_tokens=8, min_new_tokens=8, do_sample=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spans", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    spans_file = args.spans.open("w", encoding="utf-8")
    provider = trace.get_tracer_provider()
    provider.add_span_processor(
        SimpleSpanProcessor(ConsoleSpanExporter(out=spans_file, formatter=span_record))
    )  # type: ignore[attr-defined]
    provider.add_span_processor(BrokenOnEnd(NAN_MODEL_NAME))  # type: ignore[attr-defined]

    model, tokenizer = smollm2()
    nan, failing = nan_model(), failing_model()
    for number in range(1, args.rounds + 1):
        one_round(model, tokenizer, nan, failing)
        provider.force_flush()
        spans_file.flush()
        print(f"round {number} done", flush=True)
        if number < args.rounds:
            sys.stdin.readline()
    sys.stdin.read()  # keep the metrics endpoint up until the test closes stdin


if __name__ == "__main__":
    main()
