"""Parity with transformers' IDEFICS: a tiny random ``IdeficsForVisionText2Text`` loads with equal logits.

Interleaved prompt with two images; vision width 24 != LLM width 32 (the cross-attention reads the perceiver's
vision-width latents), a block before every 2nd of 4 layers, two decoupled additional-vocabulary tokens.
"""

from __future__ import annotations

import pytest
import torch
from transformers import IdeficsConfig, IdeficsForVisionText2Text
from transformers.models.idefics.processing_idefics import (
    image_attention_mask_for_packed_input_ids,
    incremental_to_binary_attention_mask,
)

from tests.conftest import WORDS
from tests.parity.test_perceiver_parity import randomize
from vlfuse import VLM
from vlfuse.data.tokenizer import build_tokenizer


def save_tiny_idefics(path, alpha_type: str, qk_norm: bool):
    tok = build_tokenizer(WORDS)
    vision = {"embed_dim": 24, "image_size": 8, "patch_size": 2, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 48}
    perceiver = {"use_resampler": True, "resampler_n_latents": 4, "resampler_depth": 1, "resampler_n_heads": 2,
                 "resampler_head_dim": 8}
    config = IdeficsConfig(vocab_size=len(tok) - 2, additional_vocab_size=2, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=4, num_attention_heads=2, cross_layer_interval=2, use_resampler=True,
                           qk_layer_norms=qk_norm, alpha_type=alpha_type, vision_config=vision,
                           perceiver_config=perceiver, max_position_embeddings=64, freeze_text_layers=False,
                           freeze_vision_layers=False, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    hf = randomize(IdeficsForVisionText2Text(config))
    with torch.no_grad():
        for layer in hf.model.gated_cross_attn_layers:  # open gates: the blocks must matter
            layer.alpha_cross_attn.uniform_(0.5, 1.0)
            layer.alpha_dense.uniform_(-1.0, -0.5)
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return hf, tok


@pytest.mark.parametrize(("alpha_type", "qk_norm"), [("float", False), ("vector", True)])
def test_idefics_logits_match_transformers(tmp_path, alpha_type, qk_norm):
    hf, tok = save_tiny_idefics(tmp_path, alpha_type, qk_norm)
    ours = VLM.from_transformers(str(tmp_path)).eval()
    assert ours.injector.positions == [0, 2] and ours.injector.placeholder_tokens(ours.visual_tokens) == 1
    words = "what <image> color is the <image> circle ?".split()
    ids = torch.tensor([[tok.bos_token_id, *tok.convert_tokens_to_ids(words)]])
    assert int(ids.max()) >= hf.config.vocab_size  # the additional (decoupled) vocabulary is read
    pixels = torch.randn(2, 3, 8, 8)
    mask = torch.ones_like(ids)
    incremental, _ = image_attention_mask_for_packed_input_ids(ids, tok, "pt")
    image_mask = incremental_to_binary_attention_mask(incremental, "pt", num_classes=2)  # (B, T, N)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, pixel_values=pixels[None], image_attention_mask=image_mask).logits
        got = ours(ids, attention_mask=mask, pixel_values=pixels).logits
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        moved = ours(ids, attention_mask=mask, pixel_values=torch.stack([pixels[0], -pixels[1]])).logits
    second = words.index("<image>", 2) + 1
    torch.testing.assert_close(moved[:, :second], got[:, :second], atol=1e-6, rtol=0)  # before the 2nd image
    assert not torch.allclose(moved[:, second:], got[:, second:], atol=1e-3)
