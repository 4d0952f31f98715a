"""The chat template, ``<image>`` expansion and labels, checked token by token on tiny examples.

Shapes: ``B`` batch, ``S`` padded length, ``N_all`` images in the batch, ``C H W`` pixels.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tests.conftest import WORDS
from vlfuse.data.collate import IGNORE, Processor
from vlfuse.data.tokenizer import build_tokenizer
from vlfuse.data.transforms import ImageTransform

K = 3  # positions per image in these tests


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(WORDS)


@pytest.fixture(scope="module")
def proc(tok):
    return Processor(tok, ImageTransform(8, (0.5,) * 3, (0.5,) * 3, resize="stretch"), tokens_per_image=K,
                     max_length=128)  # stretch: the 20x12 red test image stays all red


def turns(*pairs: str) -> list[dict]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(pairs)]


def words(tok, ids: list[int]) -> list[str]:
    return [t.removeprefix("Ġ") for t in tok.convert_ids_to_tokens(ids)]  # "Ġ": the byte-level BPE's space


def answer_words(tok, labels: list[int]) -> list[str]:
    return words(tok, [label for label in labels if label != IGNORE])


def test_single_turn_template_and_labels(tok, proc):
    e = proc.encode(
        {"id": "a", "image": torch.rand(3, 8, 8), "conversations": turns("<image> what color is the circle ?", "red")}
    )
    expected = "<s> user : <image> <image> <image> what color is the circle ? assistant : red </s>".split()
    assert words(tok, e.input_ids) == expected
    # the byte-level decode is exact; <image> strips the spaces around it when encoding
    assert tok.decode(e.input_ids) == "<s> user :<image><image><image> what color is the circle ? assistant : red</s>"
    assert e.labels[:-2] == [IGNORE] * (len(expected) - 2)  # prompt and image tokens are never targets
    assert words(tok, e.labels[-2:]) == ["red", "</s>"]
    assert e.id == "a" and len(e.images) == 1 and e.images[0].shape == (3, 8, 8)


def test_multi_turn_labels_cover_every_answer_and_its_eos(tok, proc):
    conv = turns("<image> what color is the circle ?", "red", "and the square ?", "blue of a square")
    e = proc.encode({"id": "m", "images": [torch.rand(3, 8, 8)], "conversations": conv})
    expected = (
        "<s> user : <image> <image> <image> what color is the circle ? assistant : red </s> "
        "user : and the square ? assistant : blue of a square </s>"
    ).split()
    assert words(tok, e.input_ids) == expected
    targets = [i for i, label in enumerate(e.labels) if label != IGNORE]
    assert [expected[i] for i in targets] == ["red", "</s>", "blue", "of", "a", "square", "</s>"]
    assert all(e.labels[i] == e.input_ids[i] for i in targets)
    assert answer_words(tok, e.labels) == "red </s> blue of a square </s>".split()


def test_each_image_expands_to_k_tokens_in_place(tok, proc):
    conv = turns("<image> left of <image> ?", "yes", "<image> is a circle ?", "no")
    e = proc.encode({"id": "x", "images": [torch.rand(3, 8, 8) for _ in range(3)], "conversations": conv})
    image_id = tok.convert_tokens_to_ids("<image>")
    assert e.input_ids.count(image_id) == 3 * K
    expected = (
        "<s> user : "
        + "<image> " * K
        + "left of "
        + "<image> " * K
        + "? assistant : yes </s> user : "
        + "<image> " * K
        + "is a circle ? assistant : no </s>"
    ).split()
    assert words(tok, e.input_ids) == expected
    assert all(e.labels[i] == IGNORE for i, t in enumerate(e.input_ids) if t == image_id)


def test_text_only_sample_has_no_image_tokens(tok, proc):
    e = proc.encode({"id": "t", "conversations": turns("is the circle red ?", "yes")})
    assert words(tok, e.input_ids) == "<s> user : is the circle red ? assistant : yes </s>".split()
    assert e.images == []


def test_prompt_ends_with_assistant_and_has_no_targets(tok, proc):
    e = proc.encode_prompt("<image> what color ?", [Image.new("RGB", (20, 12), "red")])
    assert words(tok, e.input_ids) == ["<s>", "user", ":", *["<image>"] * K, "what", "color", "?", "assistant", ":"]
    assert e.labels == [IGNORE] * len(e.input_ids)
    assert e.images[0].shape == (3, 8, 8)
    assert torch.allclose(e.images[0][0], torch.ones(8, 8))  # red, normalised with mean = std = 0.5


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_pads_on_the_requested_side(tok, proc, side):
    a = proc.encode({"id": "a", "image": torch.rand(3, 8, 8), "conversations": turns("<image> what ?", "red")})
    b = proc.encode({"id": "b", "conversations": turns("is the circle red ?", "yes")})
    c = proc.encode({"id": "c", "images": [torch.rand(3, 8, 8)] * 2, "conversations": turns("<image> <image> ?", "no")})
    batch = proc.collate([a, b, c], padding_side=side)
    s = max(len(e.input_ids) for e in (a, b, c))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, s)
    assert batch["pixel_values"].shape == (3, 3, 8, 8)  # N_all = 1 + 0 + 2, in sample order
    assert torch.equal(batch["pixel_values"][0], a.images[0]) and torch.equal(batch["pixel_values"][1], c.images[0])
    assert batch["image_counts"].tolist() == [1, 0, 2]
    for row, e in enumerate((a, b, c)):
        n = len(e.input_ids)
        real = slice(s - n, s) if side == "left" else slice(0, n)
        pad = slice(0, s - n) if side == "left" else slice(n, s)
        assert batch["input_ids"][row, real].tolist() == e.input_ids
        assert batch["labels"][row, real].tolist() == e.labels
        assert (batch["input_ids"][row, pad] == tok.pad_token_id).all()
        assert (batch["labels"][row, pad] == IGNORE).all()
        assert batch["attention_mask"][row].sum() == n and (batch["attention_mask"][row, real] == 1).all()


def test_collate_without_images_has_no_pixel_values(tok, proc):
    batch = proc.collate([proc.encode({"id": "t", "conversations": turns("yes ?", "no")})])
    assert "pixel_values" not in batch and batch["image_counts"].tolist() == [0]


def test_text_ids_are_memoised_and_bounded(tok, proc, monkeypatch):
    import vlfuse.data.collate as collate

    monkeypatch.setattr(collate, "MEMO_TEXTS", 2)
    texts = ["what color is the circle ?", "yes", "no", "yes"]
    assert [proc._ids(t) for t in texts] == [tok(t, add_special_tokens=False).input_ids for t in texts]
    assert len(proc._memo) <= 2
    proc._ids("yes").append(99)  # a caller may change its list; the memo keeps its own
    assert proc._ids("yes") == tok("yes", add_special_tokens=False).input_ids
