"""Shared fixtures: tiny random backbones built in process, saved to tmp_path; nothing is downloaded."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

TINY_CLIP_VISION = {
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 8,
    "patch_size": 2,
}
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
WORDS = ["what", "color", "is", "the", "circle", "square", "?", "red", "blue", "left", "of", "and", "a", "yes", "no"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def tiny_vlm_config(**overrides):
    """A tiny VLMConfig (ViT 8 px / patch 2, Llama width 32, 2 layers) for fast tests."""
    from vlfuse.config import from_dict
    from vlfuse.model import VLMConfig

    data = {
        "encoder": {"kind": "vit", "image_size": 8, "patch_size": 2, "width": 32, "depth": 2, "heads": 2},
        "connector": {"kind": "mlp"},
        "injection": {"kind": "concat"},
        "llm": {"config": dict(TINY_LLAMA)},
    }
    for k, v in overrides.items():
        data[k] = v
    return from_dict(VLMConfig, data)


def tiny_vlm(**overrides):
    from vlfuse.data.tokenizer import build_tokenizer
    from vlfuse.model import VLM

    return VLM.from_config(tiny_vlm_config(**overrides), tokenizer=build_tokenizer(WORDS))
