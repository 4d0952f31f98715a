"""Tokenizers: a word-level one for the built-in scenes LLM, or any local ``AutoTokenizer``; both get ``<image>``.

The built-in tokenizer is a ``tokenizers`` WordLevel model over the scene vocabulary (lower-cased, split on
whitespace and punctuation) wrapped in ``PreTrainedTokenizerFast``, so it saves and loads like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from vlfuse.hub import NO_REMOTE_CODE, check_folder

SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
TEMPLATE_WORDS = ("user", "assistant", ":")  # the words of vlfuse.data.collate's plain chat template


@dataclass(frozen=True)
class TokenizerConfig:
    path: str | None = None  # local folder for AutoTokenizer; None builds the word-level scenes tokenizer
    image_token: str = "<image>"  # placeholder added as a special token


def build_word_tokenizer(words: Iterable[str], image_token: str = "<image>") -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is the specials, ``image_token`` and ``words``."""
    vocab: dict[str, int] = {}
    for w in [*SPECIALS.values(), image_token, *TEMPLATE_WORDS, *sorted(set(words))]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)
    fast.add_special_tokens({"additional_special_tokens": [image_token]})
    return fast


def load_tokenizer(config: TokenizerConfig, words: Iterable[str] = ()) -> PreTrainedTokenizerBase:
    """The tokenizer for ``config``: ``AutoTokenizer`` from ``config.path`` or the word-level one over ``words``.

    A pad token is set (to EOS) when the tokenizer has none; ``config.image_token`` is added if missing.
    """
    if config.path is None:
        return build_word_tokenizer(words, config.image_token)
    if not Path(config.path).exists():
        raise ValueError(f"tokenizer path {config.path!r} does not exist; give a local folder with tokenizer files")
    check_folder(config.path, "tokenizer.path")  # no code from the folder
    tok = AutoTokenizer.from_pretrained(config.path, **NO_REMOTE_CODE)
    if config.image_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [config.image_token]})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
