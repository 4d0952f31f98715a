"""The built-in byte-level BPE (deterministic, never unknown, one token per scene word) and local tokenizer folders
with a chat template (used for prompts and training examples, labels on the answer + EOS only)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.conftest import tiny_vlm_config
from vlfuse.data.collate import IGNORE, Processor
from vlfuse.data.dataset import scene_texts
from vlfuse.data.scenes import ScenesConfig, generate, scene_vocabulary
from vlfuse.data.tokenizer import TokenizerConfig, build_tokenizer, load_tokenizer


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


def test_training_twice_gives_a_byte_identical_tokenizer_json(tmp_path):
    texts = ["What digit is this?", "Seven.", "Is there a blue square?", "Yes, there is one."] * 3
    for name in ("a", "b"):
        build_tokenizer(texts).save_pretrained(str(tmp_path / name))
    a, b = ((tmp_path / n / "tokenizer.json").read_bytes() for n in ("a", "b"))
    assert a == b
    assert build_tokenizer(texts[:2]).get_vocab() != build_tokenizer(texts).get_vocab()  # it did learn the text


@pytest.mark.parametrize("text", ["Zebra!", "café naïve Ærøskøbing", "🦓 emoji 😀", "東京", "tab\tand\nnewline  x"])
def test_unseen_text_round_trips_through_bytes(text):
    tok = build_tokenizer(scene_texts(ScenesConfig()))
    ids = _ids(tok, text)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == " " + text  # the pre-tokenizer's leading space, nothing else added or lost


def test_every_scene_word_is_one_token():
    cfg = ScenesConfig(skills={"color": 1.0, "position": 1.0}, words=("cat", "elephant"))
    tok = build_tokenizer(scene_texts(cfg))
    words = scene_vocabulary(cfg)
    assert "elephant" in words and "top" in words
    for w in [*words, "user", "assistant", ":"]:
        assert len(_ids(tok, f" {w}")) == 1, w
    assert len(_ids(tok, "<image>")) == 1 and len(tok) < 1000


def test_scene_sequences_have_one_token_per_word():
    """A scenes conversation is as long as with a word-level vocabulary: the demo's step time does not grow."""
    tok = build_tokenizer(scene_texts(ScenesConfig()))
    proc = Processor(tok, lambda im: torch.zeros(3, 8, 8), tokens_per_image=9, max_length=512)
    for r in generate(ScenesConfig(extra_turns=2, skills={"caption": 1.0, "count": 1.0, "spatial": 1.0}), 6, 0):
        text = " ".join(f"user : {t['value']} assistant :" if t["from"] == "human" else t["value"]
                        for t in r["conversations"])
        n_words = len(text.replace("<image>", " ").split()) + 9 * text.count("<image>")
        n_eos = len(r["conversations"]) // 2
        assert len(proc.encode(r).input_ids) == 1 + n_words + n_eos  # BOS, words, EOS per answer


def test_vocab_size_below_the_byte_alphabet_is_refused():
    with pytest.raises(ValueError, match="vocab_size = 300"):
        TokenizerConfig(vocab_size=300)


TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}"
            "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def _tokenizer_folder(path) -> str:
    """A tiny word-level tokenizer with a chat template, saved as a real LLM's tokenizer folder would be."""
    words = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "what", "is", "it", "?", "red", "a", "."]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=["<|user|>", "<|assistant|>"])
    fast.chat_template = TEMPLATE
    fast.save_pretrained(str(path))
    return str(path)


def test_a_local_tokenizer_folder_with_a_chat_template_is_used(tmp_path):
    folder = _tokenizer_folder(tmp_path / "tok")
    tok = load_tokenizer(TokenizerConfig(path=folder))
    assert tok.chat_template == TEMPLATE and tok.convert_tokens_to_ids("<image>") == len(tok) - 1
    proc = Processor(tok, lambda im: torch.zeros(3, 8, 8), tokens_per_image=2, max_length=64)
    record = {"id": "r", "image": "x", "conversations": [
        {"from": "human", "value": "<image> what is it ?"}, {"from": "gpt", "value": "a red ."},
        {"from": "human", "value": "is it red ?"}, {"from": "gpt", "value": "red"}]}
    ex = proc.encode(record)
    rendered = ("<s> <|user|> <image> <image> what is it ? <|assistant|> a red . </s> <|user|> is it red ? "
                "<|assistant|> red </s>")
    assert tok.convert_ids_to_tokens(ex.input_ids) == rendered.split()  # <image> expanded to its 2 positions
    targets = [t for t, lab in zip(tok.convert_ids_to_tokens(ex.input_ids), ex.labels) if lab != IGNORE]
    assert targets == ["a", "red", ".", "</s>", "red", "</s>"]  # the answers and their EOS, nothing else
    prompt = proc.encode_prompt("<image> what is it ?", ["x"])
    expected = "<s> <|user|> <image> <image> what is it ? <|assistant|>".split()
    assert tok.convert_ids_to_tokens(prompt.input_ids) == expected


def test_the_model_takes_its_tokenizer_from_tokenizer_path(tmp_path):
    from vlfuse.config import from_dict, to_dict
    from vlfuse.model import VLM, VLMConfig

    data = to_dict(tiny_vlm_config())
    data["tokenizer"] = {"path": _tokenizer_folder(tmp_path / "tok")}
    model = VLM.from_config(from_dict(VLMConfig, data))
    assert model.tokenizer.chat_template == TEMPLATE
    assert model.llm.get_input_embeddings().num_embeddings == len(model.tokenizer) == 14
    ids = model.processor().encode_prompt("<image> what is it ?", [torch.zeros(3, 8, 8)]).input_ids
    assert model.tokenizer.convert_ids_to_tokens(ids)[-1] == "<|assistant|>"
