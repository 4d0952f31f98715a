"""Every user-facing error names the value, the expectation and the fix (STYLE R7); one test per error."""

from __future__ import annotations

import re

import pytest
import torch

from tests.conftest import tiny_vlm
from vlfuse.injection.concat import check_placeholders

V = 16  # visual tokens per image of the tiny VLM


@pytest.fixture(scope="module")
def model():
    return tiny_vlm().eval()


def chat(question: str, **images) -> dict:
    conversation = [{"from": "human", "value": question}, {"from": "gpt", "value": "red"}]
    return {"id": "q7", **images, "conversations": conversation}


def image_mask(*runs: int, length: int = 64) -> torch.Tensor:
    """``(B, length)`` mask with ``runs[b]`` image tokens at the start of row ``b``."""
    mask = torch.zeros(len(runs), length, dtype=torch.bool)
    for b, n in enumerate(runs):
        mask[b, :n] = True
    return mask


# --- placeholders vs images ------------------------------------------------------------------------------------
def test_processor_names_sample_and_both_counts_when_placeholders_and_images_differ(model):
    record = chat("<image> what color is the circle ?", images=[torch.rand(3, 8, 8), torch.rand(3, 8, 8)])
    with pytest.raises(ValueError, match=r"sample 'q7' has 1 <image> placeholder\(s\) but 2 image\(s\)") as err:
        model.processor().encode(record)
    assert "one <image> in the text for each image" in str(err.value)


def test_processor_counts_a_placeholder_without_image(model):
    with pytest.raises(ValueError, match=r"sample 'q7' has 2 <image> placeholder\(s\) but 1 image\(s\)"):
        model.processor().encode(chat("<image> <image> what color ?", image=torch.rand(3, 8, 8)))


def test_injector_names_the_sample_and_counts_given_image_counts():
    visual = torch.zeros(4, V, 8)
    with pytest.raises(ValueError, match=r"sample 1 has 16 image tokens \(1 images of 16 tokens\) but 2 image\(s\)"):
        check_placeholders(image_mask(2 * V, V), visual, torch.tensor([2, 2]))


def test_injector_without_image_counts_reports_tokens_and_features():
    with pytest.raises(ValueError, match=r"do not match: tokens: 48, features: 2 images x 16 = 32;"):
        check_placeholders(image_mask(2 * V, V), torch.zeros(2, V, 8), None)


def test_injector_points_at_a_truncated_image():
    with pytest.raises(ValueError, match=r"tokens: 26, features: 2 images x 16 = 32 \(sample 1 has 10, not a multiple"):
        check_placeholders(image_mask(V, 10), torch.zeros(2, V, 8), None)


def test_injector_rejects_image_tokens_without_images():
    with pytest.raises(ValueError, match="the text has 16 image tokens but no images were given; pass pixel_values"):
        check_placeholders(image_mask(V, 0), None, None)
    with pytest.raises(ValueError, match="the text has 16 image tokens but no images were given"):
        check_placeholders(image_mask(0, V), torch.zeros(0, V, 8), None)


def test_vlm_forward_checks_placeholders_against_pixel_values(model):
    proc = model.processor()
    batch = proc.collate(
        [
            proc.encode(chat("<image> what ?", images=[torch.rand(3, 8, 8)])),
            proc.encode(chat("<image> <image> what ?", images=[torch.rand(3, 8, 8)] * 2)),
        ]
    )
    pixels = batch["pixel_values"][:2]  # one image short
    with pytest.raises(ValueError, match=r"sample 1 has 32 image tokens \(2 images of 16 tokens\) but 1 image\(s\)"):
        model(batch["input_ids"], batch["attention_mask"], pixels, image_counts=torch.tensor([1, 1]))


# --- too long for the LLM ---------------------------------------------------------------------------------------
def test_processor_rejects_a_sample_longer_than_the_llm(model):
    n = 16  # 16 images x 16 tokens alone fill the 256 positions
    record = chat(" ".join(["<image>"] * n) + " what ?", images=[torch.rand(3, 8, 8)] * n)
    # <s> user : what ? assistant : red </s> = 9 text tokens
    message = f"sample 'q7' is too long for the LLM: 9 text tokens + {n} image(s) x {V} visual tokens = 265 tokens"
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        model.processor().encode(record)
    assert "> 256 positions" in str(err.value)


def test_processor_rejects_a_prompt_longer_than_the_llm(model):
    with pytest.raises(ValueError, match=re.escape("is too long for the LLM: 257 text tokens + 0 image(s)")):
        model.processor().encode_prompt(" ".join(["red"] * 252))


def test_vlm_forward_rejects_a_sequence_longer_than_the_llm(model):
    image_id = model.injector.image_token_id
    ids = torch.full((1, 260), model.tokenizer.convert_tokens_to_ids("red"))
    ids[0, :V] = image_id
    message = "sequence of 260 tokens (244 text + 16 visual) exceeds the LLM's 256 positions"
    with pytest.raises(ValueError, match=re.escape(message)):
        model(ids, pixel_values=torch.rand(1, 3, 8, 8))


# --- pixels the encoder cannot take -----------------------------------------------------------------------------
def test_encoder_rejects_wrong_channel_count(model):
    with pytest.raises(ValueError, match=r"images have 1 channel\(s\) but the encoder expects 3; convert them"):
        model.encoder(torch.rand(2, 1, 8, 8))


def test_encoder_rejects_wrong_image_size(model):
    with pytest.raises(ValueError, match="images are 16x12 px but the encoder expects 8x8; resize them"):
        model.encoder(torch.rand(2, 3, 16, 12))


def test_encoder_rejects_wrong_rank(model):
    with pytest.raises(ValueError, match=re.escape("must be (images, channels, height, width); got shape (3, 8, 8)")):
        model.encoder(torch.rand(3, 8, 8))


def test_transform_rejects_a_grayscale_tensor(model):
    with pytest.raises(ValueError, match=re.escape("image tensor has shape (1, 8, 8); expected (3, H, W)")):
        model.processor().encode(chat("<image> what ?", image=torch.rand(1, 8, 8)))
