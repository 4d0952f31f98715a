"""The user's path: ``proc(text=..., images=..., padding_side=...)`` -> ``model(**batch)`` -> ``generate_ids``."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_vlm
from vlfuse.generate import generate_ids


def _images(n):
    return [torch.rand(3, 8, 8) for _ in range(n)]


@pytest.mark.parametrize("side", ["left", "right"])
def test_raw_prompts_are_tokenized_expanded_and_padded(side):
    model = tiny_vlm().eval()
    proc, tok = model.processor(), model.tokenizer
    texts = ["<image>\nwhat color is the circle ?", "<image><image> is the square left of the circle ?", "yes ?"]
    batch = proc(text=texts, images=[_images(1), _images(2), []], padding_side=side)
    assert set(batch) == {"input_ids", "attention_mask", "image_counts", "pixel_values"}
    assert batch["image_counts"].tolist() == [1, 2, 0] and batch["pixel_values"].shape == (3, 3, 8, 8)
    image_id, v = model.injector.image_token_id, model.visual_tokens
    for row, mask, text in zip(batch["input_ids"], batch["attention_mask"], texts):
        expected = []
        for i in tok(text).input_ids:  # the tokenizer's own special tokens, each <image> as V tokens
            expected += [i] * v if i == image_id else [i]
        real = row[mask.bool()].tolist()
        assert real == expected
        pad = (mask == 0).nonzero().flatten().tolist()
        if pad:  # padding sits on the side asked for
            assert pad == (list(range(len(pad))) if side == "left" else list(range(len(row) - len(pad), len(row))))
    assert model(**batch).logits.shape == (*batch["input_ids"].shape, model.llm.config.vocab_size)


def test_generate_ids_from_the_user_batch_equals_one_prompt_at_a_time():
    model = tiny_vlm().eval()
    proc = model.processor()
    texts, groups = ["<image>\nwhat color is the circle ?", "<image><image> and ?"], [_images(1), _images(2)]
    batch = proc(text=texts, images=groups, padding_side="left")
    together = generate_ids(model, batch, max_new_tokens=5, eos_token_id=-1)
    for i in range(2):
        alone = generate_ids(model, proc(text=texts[i], images=groups[i]), max_new_tokens=5, eos_token_id=-1)
        assert together[i].tolist() == alone[0].tolist()


def test_a_slot_receives_the_batch_keys_it_declares_and_unknown_keys_are_refused():
    model = tiny_vlm().eval()
    batch = model.processor()(text="<image> what ?", images=[torch.rand(3, 8, 8)])
    seen = {}
    forward = model.connector.forward

    def spy(features, **kw):
        seen.update(kw)
        return forward(features)

    model.connector.forward = spy
    model.connector.inputs = ("query_ids",)
    assert model.input_names == ("query_ids",)
    marker = torch.tensor([[7]])
    model(**batch, query_ids=marker)
    assert seen["query_ids"] is marker
    with pytest.raises(TypeError, match=r"'tiles'.*no slot of this model reads.*query_ids"):
        model(**batch, tiles=marker)


@pytest.mark.parametrize(("text", "images", "match"), [
    (["a <image>", "b <image>"], [torch.rand(3, 8, 8)] * 2, "flat list but there are 2 prompts"),
    (["a <image>", "b"], [[torch.rand(3, 8, 8)]], "1 image lists for 2 prompts"),
    (["a <image> <image>"], [[torch.rand(3, 8, 8)]], "2 <image> placeholder"),
    ([], None, "non-empty list of prompts"),
])
def test_bad_user_calls_name_the_problem(text, images, match):
    with pytest.raises(ValueError, match=match):
        tiny_vlm().processor()(text=text, images=images)


def test_padding_side_is_checked():
    with pytest.raises(ValueError, match="padding_side='middle'"):
        tiny_vlm().processor()(text="yes ?", padding_side="middle")
