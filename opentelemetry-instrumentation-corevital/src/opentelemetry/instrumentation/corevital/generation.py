"""Reading a ``generate()`` call: its effective request, and what it returned.

The arguments are bound to ``generate``'s own signature (a ``GenerationConfig`` or stopping
criteria may be passed positionally), and the effective generation config is resolved the way
``generate`` resolves it — through the model's own ``_prepare_generation_config`` where it has one:
keyword arguments over the ``generation_config`` argument over the model's ``generation_config``
over the library defaults. Token counts are taken from the tensors, never estimated.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from . import semconv
from .model_names import model_name

logger = logging.getLogger(__name__)

_HF_DEFAULT_MAX_LENGTH = 20
_NOTED_MODES: set[str] = set()
_NOTED_LOCK = threading.Lock()


@dataclass
class GenerationRequest:
    """The effective parameters of one ``generate()`` call."""

    model_name: str
    architecture: str = ""
    is_encoder_decoder: bool = False
    prompt_length: int = 0
    input_tokens: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    prefill_forwards: int = 1
    row_stopping: bool = False
    unsupported_reason: str | None = None
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    tokenizer: Any = None
    pipeline_prompts: list[Any] = field(default_factory=list)

    def prompt_tokens(self, row: int) -> list[int]:
        """The unpadded prompt token ids of input ``row`` (empty when the prompt was embeddings)."""
        if self.input_ids is None or not 0 <= row < self.input_ids.shape[0]:
            return []
        ids = self.input_ids[row].tolist()
        if self.attention_mask is not None and self.attention_mask.shape == self.input_ids.shape:
            return [int(t) for t, keep in zip(ids, self.attention_mask[row].tolist(), strict=True) if keep]
        return [int(t) for t in ids]


@dataclass
class GenerationOutcome:
    """What ``generate()`` returned, per returned sequence."""

    output_lengths: list[int] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    sequences: torch.Tensor | None = None

    @property
    def output_tokens(self) -> int:
        return sum(self.output_lengths)

    def stopped(self, interventions: Mapping[int, Any]) -> GenerationOutcome:
        """This outcome with the sequences CoreVital stopped (by returned sequence: an object with
        the ``step`` of the last token kept) ending there, finish reason ``corevital.stopped``; the
        padding after it is not output."""
        lengths, reasons = list(self.output_lengths), list(self.finish_reasons)
        for index, intervention in interventions.items():
            if index < len(lengths):
                lengths[index] = min(lengths[index], int(intervention.step) + 1)
                reasons[index] = semconv.FINISH_REASON_COREVITAL_STOPPED
        return GenerationOutcome(lengths, reasons, self.sequences)

    @property
    def longest_output(self) -> int:
        return max(self.output_lengths, default=0)


@functools.lru_cache(maxsize=1)
def _generate_parameters() -> tuple[str, ...]:
    """The positional parameter names of ``GenerationMixin.generate`` (after ``self``)."""
    from transformers.generation.utils import GenerationMixin

    generate = inspect.unwrap(GenerationMixin.generate)
    names = []
    for parameter in list(inspect.signature(generate).parameters.values())[1:]:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(parameter.name)
    return tuple(names)


def bind_arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``generate``'s arguments by name, wherever they were passed (positionally or by keyword)."""
    named = dict(zip(_generate_parameters(), args, strict=False))
    return {**named, **kwargs}


def positional_index(name: str) -> int:
    """Where ``generate`` takes ``name`` positionally (``-1`` when it does not)."""
    parameters = _generate_parameters()
    return parameters.index(name) if name in parameters else -1


@functools.lru_cache(maxsize=1)
def _library_defaults() -> tuple[bool, dict[str, Any]]:
    """``(values_are_none_when_unset, defaults)`` of this transformers' ``GenerationConfig``.

    transformers 5 leaves unset fields ``None`` and fills them from ``_get_default_generation_params``
    when a call runs; transformers 4 gives every field its default value up front.
    """
    from transformers import GenerationConfig

    blank = GenerationConfig()
    defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
    if callable(defaults) and blank.max_length is None:
        return True, dict(defaults())
    return False, blank.to_dict()


def config_setting(model: Any, call: Mapping[str, Any], name: str) -> Any:
    """The value of generation setting ``name`` for this call, resolved as ``generate`` resolves it
    (``GenerationMixin._prepare_generation_config``), without copying any config: a keyword argument,
    else the ``generation_config`` argument, else the model's ``generation_config``, else the
    library default. With transformers 4, a value of the passed config still at its library default
    yields to the model's own non-default value (``use_model_defaults``, on unless the call says
    ``use_model_defaults=False``)."""
    if name in call and name not in _generate_parameters():
        return call[name]
    unset_is_none, defaults = _library_defaults()
    default = defaults.get(name)
    user = call.get("generation_config")
    model_value = getattr(getattr(model, "generation_config", None), name, None)
    if user is not None:
        value = getattr(user, name, None)
        if unset_is_none:
            if value is not None:
                return value
        elif not (
            call.get("use_model_defaults") is not False
            and value == default
            and model_value is not None
            and model_value != default
        ):
            return value
    return model_value if model_value is not None else default


def resolve_request(
    model: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], pipeline: Any = None
) -> GenerationRequest:
    """Resolve the effective request of ``model.generate(*args, **kwargs)`` without changing anything.

    ``pipeline``: the running pipeline call (``messages.PipelineCall``), which knows the tokenizer and
    the prompts when ``generate`` was not given them.
    """
    config = getattr(model, "config", None)
    kwargs = bind_arguments(args, kwargs)

    def setting(name: str) -> Any:
        return config_setting(model, kwargs, name)

    is_encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    inputs = kwargs.get("inputs")
    if inputs is None:
        inputs = kwargs.get("input_ids")
    input_ids = inputs if isinstance(inputs, torch.Tensor) and inputs.dim() == 2 else None
    if input_ids is not None and input_ids.is_floating_point():
        input_ids = None
    attention_mask = kwargs.get("attention_mask")
    embeds = kwargs.get("inputs_embeds")

    if isinstance(attention_mask, torch.Tensor):
        input_tokens: int | None = int(attention_mask.sum().item())
    elif input_ids is not None:
        input_tokens = int(input_ids.numel())
    elif isinstance(embeds, torch.Tensor) and embeds.dim() == 3:
        input_tokens = int(embeds.shape[0] * embeds.shape[1])
    else:
        input_tokens = None

    if is_encoder_decoder:
        decoder_ids = kwargs.get("decoder_input_ids")
        prompt_length = int(decoder_ids.shape[-1]) if isinstance(decoder_ids, torch.Tensor) else 1
    else:
        # With only inputs_embeds, generate returns the new tokens alone.
        prompt_length = int(input_ids.shape[1]) if input_ids is not None else 0

    max_new_tokens = _int_or_none(setting("max_new_tokens"))
    if max_new_tokens is None:
        max_length = _int_or_none(setting("max_length")) or _HF_DEFAULT_MAX_LENGTH
        max_new_tokens = max(0, max_length - prompt_length)

    do_sample = bool(setting("do_sample"))
    eos = setting("eos_token_id")
    if isinstance(eos, torch.Tensor):
        eos = eos.tolist()
    eos_ids = tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None)
    pad = _int_or_none(setting("pad_token_id"))
    if pad is None and eos_ids:
        pad = eos_ids[0]  # what generate itself falls back to

    chunk = _int_or_none(setting("prefill_chunk_size"))
    prefill_forwards = 1
    if chunk and not is_encoder_decoder and prompt_length > 0:
        prefill_forwards = max(1, math.ceil(prompt_length / chunk))

    unsupported = None
    several = "each forward verifies several candidate tokens, so it is not one decoding step"
    if kwargs.get("assistant_model") is not None or setting("prompt_lookup_num_tokens"):
        unsupported = f"assisted and prompt-lookup decoding are not supported: {several}"
    elif setting("assistant_early_exit"):
        unsupported = f"self-speculative decoding is not supported: {several}"
    if unsupported is not None:
        note_unsupported(unsupported)

    return GenerationRequest(
        model_name=model_name(model),
        architecture=type(model).__name__,
        is_encoder_decoder=is_encoder_decoder,
        prompt_length=prompt_length,
        input_tokens=input_tokens,
        max_new_tokens=max_new_tokens,
        temperature=_float_or_none(setting("temperature")) if do_sample else None,
        top_p=_float_or_none(setting("top_p")) if do_sample else None,
        top_k=_int_or_none(setting("top_k")) if do_sample else None,
        seed=_int_or_none(setting("seed")),
        do_sample=do_sample,
        num_beams=_int_or_none(setting("num_beams")) or 1,
        num_return_sequences=_int_or_none(setting("num_return_sequences")) or 1,
        eos_token_ids=eos_ids,
        pad_token_id=pad,
        prefill_forwards=prefill_forwards,
        row_stopping=bool(setting("stop_strings") or kwargs.get("stopping_criteria")),
        unsupported_reason=unsupported,
        input_ids=input_ids,
        attention_mask=attention_mask if isinstance(attention_mask, torch.Tensor) else None,
        tokenizer=kwargs.get("tokenizer") or getattr(pipeline, "tokenizer", None),
        pipeline_prompts=list(getattr(pipeline, "prompts", ())),
    )


def note_unsupported(reason: str) -> None:
    """Say once per process, at INFO, that a decoding mode gets no health read-out, and why."""
    with _NOTED_LOCK:
        if reason in _NOTED_MODES:
            return
        _NOTED_MODES.add(reason)
    logger.info(
        "CoreVital: no health read-out for this generate() call: %s. Its span carries the GenAI "
        "attributes and the reason (%s); the output is unaffected. Not logged again.",
        reason, semconv.COREVITAL_CAPTURE_UNAVAILABLE_REASON,
    )  # fmt: skip


def returned_sequences(result: Any) -> torch.Tensor | None:
    """The ``sequences`` tensor of whatever ``generate`` returned (tensor or ``GenerateOutput``)."""
    if isinstance(result, torch.Tensor):
        return result
    sequences = getattr(result, "sequences", None)
    return sequences if isinstance(sequences, torch.Tensor) else None


def inspect_result(result: Any, request: GenerationRequest) -> GenerationOutcome:
    """Count the generated tokens of every returned sequence and say why it ended.

    A sequence ends at its first EOS token (included in the count, finish reason ``stop``). A
    sequence without EOS that a stopping criterion ended early (padded, or the whole batch stopped
    before the limit) is ``stop``; one that reached ``max_new_tokens`` is ``length``.
    """
    sequences = returned_sequences(result)
    if sequences is None or sequences.dim() != 2:
        return GenerationOutcome()
    generated = sequences[:, request.prompt_length :]
    rows, width = generated.shape
    if width == 0:
        return GenerationOutcome([0] * rows, [semconv.FINISH_REASON_STOP] * rows, sequences)
    lengths = torch.full((rows,), width, dtype=torch.long)
    has_eos = torch.zeros(rows, dtype=torch.bool)
    if request.eos_token_ids:
        eos = torch.tensor(request.eos_token_ids, device=generated.device)
        is_eos = torch.isin(generated, eos).cpu()
        has_eos = is_eos.any(dim=1)
        first = is_eos.to(torch.int8).argmax(dim=1) + 1
        lengths = torch.where(has_eos, first, lengths)
    pad = request.pad_token_id
    if request.row_stopping and pad is not None and pad not in request.eos_token_ids:
        # A row that a stop string or a custom criterion finished early is filled with padding to
        # the batch width (without such criteria, a generated pad token is a real token).
        not_pad = (generated != pad).cpu()
        last_real = width - not_pad.flip(dims=[1]).to(torch.int8).argmax(dim=1)
        last_real = torch.where(not_pad.any(dim=1), last_real, torch.zeros_like(last_real))
        lengths = torch.where(has_eos, lengths, last_real)
    limit = request.max_new_tokens
    reasons = [
        semconv.FINISH_REASON_STOP
        if bool(has_eos[i]) or limit is None or int(lengths[i]) < limit
        else semconv.FINISH_REASON_LENGTH
        for i in range(rows)
    ]
    return GenerationOutcome([int(n) for n in lengths], reasons, sequences)


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
