"""Prompt and completion as OpenTelemetry GenAI messages (content capture only).

``generate()`` sees token ids, not conversations, so the messages are rebuilt from what is at hand,
best source first:

1. a ``pipeline("text-generation")`` call: the chat messages (or the prompt string) the pipeline was
   given, roles kept;
2. ``generate(tokenizer=...)``: the prompt decoded with its special tokens and split into messages
   when it follows a known chat template (ChatML as in SmolLM2 and Qwen, Llama 3, Gemma, Phi-3 and
   Zephyr, Mistral ``[INST]``); a prompt in no known format becomes one ``user`` message;
3. without a tokenizer, no text at all.

For a batch, the messages are those of the input row whose sequence the span describes, and the
output messages are that row's returned sequences (one per ``num_return_sequences`` choice).
Nothing here runs unless content capture is on.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


@dataclass
class Messages:
    """GenAI ``gen_ai.input.messages`` and ``gen_ai.output.messages`` as Python lists."""

    input: list[Message] = field(default_factory=list)
    output: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class PipelineCall:
    """What a running ``pipeline`` knows that ``generate`` does not: its tokenizer and the prompts
    (strings or chat messages) of the batch being generated."""

    tokenizer: Any
    prompts: Sequence[Any]


_PIPELINE_CALL: contextvars.ContextVar[PipelineCall | None] = contextvars.ContextVar(
    "corevital_pipeline_call", default=None
)


@contextlib.contextmanager
def pipeline_call(call: PipelineCall) -> Iterator[None]:
    """Make the pipeline's tokenizer and prompts known to the ``generate`` it calls."""
    token = _PIPELINE_CALL.set(call)
    try:
        yield
    finally:
        _PIPELINE_CALL.reset(token)


def current_pipeline_call() -> PipelineCall | None:
    """The pipeline call ``generate`` runs in, if any."""
    return _PIPELINE_CALL.get()


def pipeline_prompts(model_inputs: Any) -> list[Any]:
    """The prompts of a text-generation pipeline's ``model_inputs`` (``prompt_text``: a string, a
    chat, or a list of them for a batch)."""
    prompt = model_inputs.get("prompt_text") if isinstance(model_inputs, dict) else None
    if prompt is None:
        return []
    return list(prompt) if isinstance(prompt, (list, tuple)) else [prompt]


def text_message(role: str, text: str) -> Message:
    """One GenAI message with a single text part."""
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def from_chat(messages: Sequence[Any]) -> list[Message]:
    """GenAI messages from transformers chat messages (``{"role", "content"}``, content a string or
    a list of typed parts); non-text parts keep their type only."""
    out: list[Message] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts = [{"type": "text", "content": content}]
        elif isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "text":
                    parts.append({"type": "text", "content": str(part.get("text", part.get("content", "")))})
                elif isinstance(part, dict):
                    parts.append({"type": str(part.get("type", "unknown"))})
        else:
            parts = []
        out.append({"role": str(message.get("role", "user")), "parts": parts})
    return out


# (pattern, role group, content group, role renames). Each matches one turn of a chat template.
_TEMPLATES: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", re.S), {}),  # ChatML
    (re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S), {}),  # Llama 3
    (re.compile(r"<start_of_turn>(\w+)\n(.*?)<end_of_turn>", re.S), {"model": "assistant"}),  # Gemma
    (re.compile(r"<\|(system|user|assistant)\|>\n?(.*?)(?:<\|end\|>|</s>)", re.S), {}),  # Phi-3, Zephyr
)
_MISTRAL = re.compile(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|$)", re.S)


def parse_chat(text: str) -> list[Message] | None:
    """Split a prompt decoded *with* its special tokens into messages, when it follows a known chat
    template; ``None`` otherwise.

    >>> parse_chat("<|im_start|>system\\nBe brief.<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n")
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'system', 'parts': [{'type': 'text', 'content': 'Be brief.'}]},
     {'role': 'user', 'parts': [{'type': 'text', 'content': 'Hi'}]}]
    >>> parse_chat("just a prompt") is None
    True
    """
    for pattern, renames in _TEMPLATES:
        turns = pattern.findall(text)
        if turns:
            return [text_message(renames.get(role, role), content.strip()) for role, content in turns]
    turns = _MISTRAL.findall(text)
    if turns:
        messages: list[Message] = []
        for user, answer in turns:
            messages.append(text_message("user", user.strip()))
            answer = answer.replace("</s>", "").strip()
            if answer:
                messages.append(text_message("assistant", answer))
        return messages
    return None


def prompt_messages(tokenizer: Any, prompt_ids: Sequence[int]) -> list[Message]:
    """The messages of one tokenized prompt: split by its chat template when it has a known one,
    else one ``user`` message with the text."""
    with_special = str(tokenizer.decode(list(prompt_ids), skip_special_tokens=False))
    parsed = parse_chat(with_special)
    if parsed is not None:
        return parsed
    return [text_message("user", str(tokenizer.decode(list(prompt_ids), skip_special_tokens=True)))]


def call_messages(
    *,
    tokenizer: Any,
    prompt_ids: Sequence[int] | None,
    pipeline_prompt: Any,
    completions: Sequence[Sequence[int]],
    finish_reasons: Sequence[str],
) -> Messages:
    """The GenAI messages of one input row and its returned sequences.

    Args:
        tokenizer: decodes token ids (``None``: no text can be recovered from ids).
        prompt_ids: the row's unpadded prompt token ids (``None`` when the prompt was embeddings).
        pipeline_prompt: the prompt a pipeline was given for this row (a string or a chat), if any.
        completions: the generated token ids of each returned sequence of the row.
        finish_reasons: their finish reasons.
    """
    messages = Messages()
    chat = getattr(pipeline_prompt, "messages", pipeline_prompt)
    if isinstance(chat, str):
        messages.input = [text_message("user", chat)]
    elif isinstance(chat, (list, tuple)) and chat:
        messages.input = from_chat(chat)
    elif tokenizer is not None and prompt_ids:
        messages.input = prompt_messages(tokenizer, prompt_ids)
    if tokenizer is not None:
        for ids, reason in zip(completions, finish_reasons, strict=False):
            text = str(tokenizer.decode(list(ids), skip_special_tokens=True))
            messages.output.append({**text_message("assistant", text), "finish_reason": reason})
    return messages
