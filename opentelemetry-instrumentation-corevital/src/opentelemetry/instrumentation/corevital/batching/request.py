"""Reading one continuous-batching request: what was asked at admission, and how it ended.

``ContinuousBatchingManager.add_request`` takes the prompt's token ids, ``max_new_tokens``, the end
of sequence ids and the per-request sampling settings; the manager's generation config fills in the
rest. A request ends with a ``GenerationOutput`` (its generated token ids and status). Token counts
are counted from those lists, never estimated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .. import semconv as sc
from ..generation import GenerationOutcome, GenerationRequest, model_name


def _eos_ids(value: Any) -> tuple[int, ...]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    values = value if isinstance(value, (list, tuple, set)) else [value]
    return tuple(int(v) for v in values if v is not None and int(v) >= 0)


def _number(value: Any, kind: type) -> Any:
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None


def batched_request(manager: Any, input_ids: Sequence[int], settings: Mapping[str, Any]) -> GenerationRequest:
    """The effective request of ``manager.add_request(input_ids, **settings)``.

    ``settings`` are ``add_request``'s keywords (``max_new_tokens``, ``eos_token_id`` and the
    logits processor's ``temperature``, ``top_k``, ``top_p``); what a request leaves unset comes from
    the manager's generation config, as the manager does itself.
    """
    model = manager.model
    config = getattr(manager, "generation_config", None)

    def setting(name: str) -> Any:
        value = settings.get(name)
        return getattr(config, name, None) if value is None else value

    prompt = [int(t) for t in input_ids]
    do_sample = bool(getattr(config, "do_sample", False))
    top_k = _number(setting("top_k"), int)
    if top_k == 1:  # what transformers serve sends for greedy decoding
        do_sample = False
    eos = settings.get("eos_token_id")
    if eos is None:
        eos = getattr(config, "eos_token_id", None)
    if eos is None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    return GenerationRequest(
        model_name=model_name(model),
        architecture=type(model).__name__,
        prompt_length=len(prompt),
        input_tokens=len(prompt),
        max_new_tokens=_number(setting("max_new_tokens"), int),
        temperature=_number(setting("temperature"), float) if do_sample else None,
        top_p=_number(setting("top_p"), float) if do_sample else None,
        top_k=top_k if do_sample else None,
        do_sample=do_sample,
        eos_token_ids=_eos_ids(eos),
        input_ids=torch.tensor([prompt], dtype=torch.long) if prompt else None,
    )


def batched_outcome(request: GenerationRequest, generated: Sequence[int]) -> GenerationOutcome:
    """Token count and finish reason of a finished request from its generated token ids: ``stop`` at
    an end of sequence token, ``length`` at ``max_new_tokens`` (a request CoreVital stopped is
    marked by the lifecycle, from the session's interventions, as for ``generate()``)."""
    tokens = [int(t) for t in generated]
    limit = request.max_new_tokens
    if tokens and tokens[-1] in request.eos_token_ids:
        reason = sc.FINISH_REASON_STOP
    elif limit is not None and len(tokens) >= limit:
        reason = sc.FINISH_REASON_LENGTH
    else:
        reason = sc.FINISH_REASON_STOP
    prompt = request.input_ids[0].tolist() if request.input_ids is not None else []
    sequences = torch.tensor([prompt + tokens], dtype=torch.long)
    return GenerationOutcome([len(tokens)], [reason], sequences)
