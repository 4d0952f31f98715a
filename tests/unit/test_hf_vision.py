"""The ``hf`` encoder: its feature count per select strategy, and the normalisation saved with a tower folder."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, CLIPVisionConfig

from tests.conftest import TINY_CLIP_VISION
from vlfuse.encoders.hf_vision import HFVisionConfig, HFVisionEncoder


@pytest.mark.parametrize(("tower", "select", "patches"), [
    ("clip_vision_model", "default", 16), ("clip_vision_model", "full", 17),  # CLS dropped / kept
    ("siglip_vision_model", "default", 15), ("siglip_vision_model", "full", 16),  # no CLS: the first patch dropped
])
def test_num_patches_is_what_forward_returns(tower, select, patches):
    enc = HFVisionEncoder(HFVisionConfig(config={**TINY_CLIP_VISION, "model_type": tower}, select=select))
    assert enc.num_patches(8, 8) == patches
    assert enc(torch.randn(2, 3, 8, 8)).shape == (2, patches, 32)


def test_default_drops_the_first_feature_of_the_hidden_state():
    enc = HFVisionEncoder(HFVisionConfig(config={**TINY_CLIP_VISION, "model_type": "siglip_vision_model"})).eval()
    pixels = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        hidden = enc.tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]  # (1, 16, 32)
        torch.testing.assert_close(enc(pixels), hidden[:, 1:], atol=0, rtol=0)


@pytest.mark.parametrize("nested", [True, False])
def test_a_tower_folder_reads_the_normalisation_of_its_saved_processor(tmp_path, nested):
    config = CLIPVisionConfig(**{k: v for k, v in TINY_CLIP_VISION.items() if k != "model_type"})
    AutoModel.from_config(config).save_pretrained(tmp_path)
    saved = {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]}
    if nested:  # transformers 5's processor.save_pretrained
        (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": saved}))
    else:
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(saved))
    enc = HFVisionEncoder(HFVisionConfig(path=str(tmp_path)))
    assert enc.image_mean == (0.1, 0.2, 0.3) and enc.image_std == (0.4, 0.5, 0.6)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_a_two_tower_folder_gives_its_vision_tower(tmp_path, family):
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    vision = {k: v for k, v in TINY_CLIP_VISION.items() if k != "model_type"}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    cls, cfg = (CLIPModel, CLIPConfig) if family == "clip" else (SiglipModel, SiglipConfig)
    full = cls(cfg(vision_config=vision, text_config=text)).eval()
    full.save_pretrained(tmp_path)
    enc = HFVisionEncoder(HFVisionConfig(path=str(tmp_path), select="full")).eval()
    pixels = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = full.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(enc(pixels), want, atol=0, rtol=0)
