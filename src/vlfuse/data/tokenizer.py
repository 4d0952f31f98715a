"""Tokenizers: a byte-level BPE trained on the run's own text, or any local ``AutoTokenizer``; both get ``<image>``.

The built-in tokenizer is a ``tokenizers`` byte-level BPE (GPT-2's pre-tokenizer: a word keeps the space before
it, ``" seven"``, and punctuation is its own piece) wrapped in ``PreTrainedTokenizerFast``, so it saves and loads
like any other. Its base alphabet is all 256 bytes, so no text is ever unknown: a word the training text never
held is spelt in smaller pieces, down to single bytes, and decodes back to exactly the text that was encoded.
Training is deterministic: the same texts give a byte-identical ``tokenizer.json``. ``vocab_size`` bounds the
merges; the scenes need about 450 tokens, so every scene word is one token, as with a word-level vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from vlfuse.hub import NO_REMOTE_CODE, check_folder

SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
TEMPLATE_WORDS = ("user", "assistant", ":")  # the words of vlfuse.data.collate's plain chat template


@dataclass(frozen=True)
class TokenizerConfig:
    path: str | None = None  # local tokenizer folder (the LLM's own) for AutoTokenizer; None trains the built-in BPE
    image_token: str = "<image>"  # placeholder added as a special token
    vocab_size: int = 8192  # at most this many tokens in the built-in BPE (specials + 256 bytes + merges)
    image_prefix: bool = False  # prompts hold no image_token; an image's tokens go before the text (BLIP-2)
    bos_after_images: bool = False  # a raw prompt without the BOS text gets it after its leading image tokens
    #                                 (transformers' MllamaProcessor); False: the tokenizer adds what it adds

    def __post_init__(self) -> None:
        if self.vocab_size < 512:
            raise ValueError(f"tokenizer.vocab_size = {self.vocab_size}: the byte-level BPE needs 256 byte tokens "
                             "plus merges; use 512 or more")


def build_tokenizer(texts: Iterable[str], image_token: str = "<image>",
                    vocab_size: int = 8192) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts`` (plus the chat-template words), with the specials and ``image_token``.

    ``image_token`` is taken out of the texts before training and strips the whitespace around it when encoding,
    so ``"<image>\\nwhat"`` encodes ``what`` as it is inside a sentence (``" what"``), one token.

    Example:
        >>> tok = build_tokenizer(["What digit is this?", "Seven."])
        >>> tok.decode(tok("Seven.", add_special_tokens=False).input_ids)
        ' Seven.'
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()  # exact inverse of the pre-tokenizer: no space is added or dropped
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, show_progress=False,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: the fallback for any unseen text
    )
    corpus = [" ".join(TEMPLATE_WORDS), *(t.replace(image_token, " ") for t in texts)]
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    image = AddedToken(image_token, special=True, lstrip=True, rstrip=True, normalized=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **SPECIALS)
    fast.add_special_tokens({"additional_special_tokens": [image]})
    return fast


def load_tokenizer(config: TokenizerConfig, texts: Iterable[str] = ()) -> PreTrainedTokenizerBase:
    """The tokenizer for ``config``: ``AutoTokenizer`` from ``config.path`` or the BPE trained on ``texts``.

    A local folder's chat template, if it has one, comes with it (``vlfuse.data.collate`` uses it). A pad token
    is set (to EOS) when the tokenizer has none; ``config.image_token`` is added if missing.
    """
    if config.path is None:
        return build_tokenizer(texts, config.image_token, config.vocab_size)
    if not Path(config.path).is_dir():
        raise ValueError(f"tokenizer path {config.path!r} is not a folder; give a local folder with tokenizer files "
                         "(tokenizer.json or tokenizer.model, tokenizer_config.json)")
    check_folder(config.path, "tokenizer.path")  # no code from the folder
    tok = AutoTokenizer.from_pretrained(config.path, **NO_REMOTE_CODE)
    if config.image_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [config.image_token]})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
