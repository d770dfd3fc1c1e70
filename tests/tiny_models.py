"""Tiny randomly initialised models built from configs (no download), one per architecture family."""

from __future__ import annotations

import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

VOCAB = 96
EOS = 2
PAD = 0


def _seeded(build):  # type: ignore[no-untyped-def]
    def make(**overrides: object) -> PreTrainedModel:
        torch.manual_seed(1234)
        return build(**overrides).eval()

    make.__name__ = build.__name__
    return make


@_seeded
def llama(**overrides: object) -> PreTrainedModel:
    defaults = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=EOS,
        pad_token_id=PAD,
    )  # fmt: skip
    config = LlamaConfig(**{**defaults, **overrides})
    return LlamaForCausalLM(config)


@_seeded
def qwen2(**overrides: object) -> PreTrainedModel:
    defaults = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=EOS,
        pad_token_id=PAD,
    )  # fmt: skip
    config = Qwen2Config(**{**defaults, **overrides})
    return Qwen2ForCausalLM(config)


@_seeded
def gpt2(**overrides: object) -> PreTrainedModel:
    defaults = dict(
        vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=512, bos_token_id=1,
        eos_token_id=EOS, pad_token_id=PAD,
    )  # fmt: skip
    config = GPT2Config(**{**defaults, **overrides})
    return GPT2LMHeadModel(config)


@_seeded
def t5(**overrides: object) -> PreTrainedModel:
    defaults = dict(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=PAD,
    )  # fmt: skip
    config = T5Config(**{**defaults, **overrides})
    return T5ForConditionalGeneration(config)


@_seeded
def bart(**overrides: object) -> PreTrainedModel:
    defaults = dict(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=EOS,
        forced_eos_token_id=None,
    )  # fmt: skip
    config = BartConfig(**{**defaults, **overrides})
    return BartForConditionalGeneration(config)


DECODER_ONLY = {"llama": llama, "qwen2": qwen2, "gpt2": gpt2}
SEQ2SEQ = {"t5": t5, "bart": bart}
ALL = {**DECODER_ONLY, **SEQ2SEQ}


def prompt(batch: int = 1, length: int = 6, padded: bool = False) -> dict[str, torch.Tensor]:
    """Deterministic prompt ids (never EOS or PAD) and mask; ``padded`` left-pads rows after the first."""
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(3, VOCAB, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    if padded:
        for row in range(1, batch):
            ids[row, :row] = PAD
            mask[row, :row] = 0
    return {"input_ids": ids, "attention_mask": mask}
