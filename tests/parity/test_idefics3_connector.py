"""Parity with transformers' ``Idefics3Connector``: its weights load into ``pixelshuffle`` and give equal outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import Idefics3Config
from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector

from tests.parity.test_perceiver_parity import TINY_VISION, randomize
from vlfuse.connectors.pixel_shuffle import pixel_shuffle
from vlfuse.convert.idefics2 import load_idefics3_connector


def tiny_idefics3_config(scale_factor: int) -> Idefics3Config:
    text = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 50}
    return Idefics3Config(vision_config={"hidden_size": 24, **TINY_VISION}, text_config=text,
                          scale_factor=scale_factor)


@pytest.mark.parametrize("ratio", [2, 3])
def test_pixel_shuffle_reproduces_idefics3_order_exactly(ratio):
    hf = Idefics3Connector(tiny_idefics3_config(ratio))
    x = torch.arange(2 * 36 * 5, dtype=torch.float32).view(2, 36, 5)  # a 6 x 6 grid, every value distinct
    torch.testing.assert_close(pixel_shuffle(x, ratio), hf.pixel_shuffle(x, ratio), rtol=0, atol=0)
    # token (0, 1) of ratio r starts with the patch at row 0, column r, then column r + 1 of the same row
    assert torch.equal(pixel_shuffle(x, ratio)[0, 1, 5:10], x[0, ratio + 1])


@pytest.mark.parametrize("ratio", [2, 3])
def test_idefics3_connector_matches_transformers(ratio):
    config = tiny_idefics3_config(ratio)
    hf = randomize(Idefics3Connector(config))
    checkpoint = {f"model.connector.{k}": v for k, v in hf.state_dict().items()}  # as in a saved Idefics3 model
    ours = load_idefics3_connector(checkpoint, config, prefix="model.connector.").eval()
    features = torch.randn(3, 36, 24)  # 3 images, a 6 x 6 patch grid of width 24
    with torch.no_grad():
        ref = hf(features)
        torch.testing.assert_close(ours(features), ref, atol=1e-5, rtol=1e-5)
    assert ref.shape == (3, 36 // ratio**2, 32) and ours.num_tokens(36) == 36 // ratio**2
    assert sum(p.numel() for p in ours.parameters()) == 24 * ratio**2 * 32  # one bias-free linear
