"""Concurrent chat requests to a local ``transformers serve`` with the official ``openai`` client.

    python examples/serve/client.py --port 8000 --model ./smollm2

Half the requests stream, half do not; each prints its answer, its token usage and its finish
reason. Run the server first (examples/serve/README.md): each request then gets one CoreVital
generation span, a child of the server's ``POST /v1/chat/completions`` span.
"""

from __future__ import annotations

import argparse
import concurrent.futures

from openai import OpenAI

PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Name three colours of the rainbow.",
    "Describe a cat who loves the sea in detail.",  # SmolLM2 loops on this one: see stop_on
]


def ask(client: OpenAI, model: str, prompt: str, stream: bool, max_tokens: int) -> str:
    messages = [{"role": "user", "content": prompt}]
    if not stream:
        reply = client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0,
        )
        usage = reply.usage
        text, reason = reply.choices[0].message.content, reply.choices[0].finish_reason
    else:
        chunks = client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, reason, usage = "", None, None
        for chunk in chunks:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                reason = choice.finish_reason or reason
    tokens = f"{usage.prompt_tokens} in, {usage.completion_tokens} out" if usage else "no usage"
    kind = "stream" if stream else "plain "
    return f"[{kind}] {prompt}\n    -> {text!r}\n    ({tokens}, finish reason {reason})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="./smollm2", help="the model folder the server was started with")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="unused")
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        futures = [
            pool.submit(ask, client, args.model, prompt, i % 2 == 0, args.max_tokens)
            for i, prompt in enumerate(PROMPTS)
        ]
        for future in futures:
            print(future.result())


if __name__ == "__main__":
    main()
