"""A word-level tokenizer built in memory for the tiny models (token ``i`` is the word ``w{i}``)."""

from __future__ import annotations

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from tiny_models import EOS, PAD, VOCAB


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {f"w{i}": i for i in range(VOCAB)}
    vocab["<pad>"], vocab["<s>"], vocab["</s>"] = PAD, 1, EOS
    del vocab[f"w{PAD}"], vocab["w1"], vocab[f"w{EOS}"]
    backend = Tokenizer(WordLevel(vocab, unk_token="w3"))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="w3"
    )
