"""Parity with transformers' perceivers: Idefics and Idefics2 weights load into ``perceiver`` and give equal outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import Idefics2Config, IdeficsConfig
from transformers.models.idefics.perceiver import IdeficsPerceiverResampler
from transformers.models.idefics2.modeling_idefics2 import Idefics2Connector

from vlfuse.convert.idefics import load_idefics_perceiver
from vlfuse.convert.idefics2 import load_idefics2_connector

TINY_VISION = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48, "image_size": 8,
               "patch_size": 2}


def randomize(module: nn.Module) -> nn.Module:
    """Random weights everywhere (norm gains near one, small biases) so no parameter can hide behind its init."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
            else:
                p.copy_(torch.randn_like(p) * (1.0 if name.endswith("latents") else 0.2))
    return module.eval()


def tiny_idefics_config(qk_norm: bool) -> IdeficsConfig:
    perceiver = {"use_resampler": True, "resampler_n_latents": 8, "resampler_depth": 2, "resampler_n_heads": 2,
                 "resampler_head_dim": 16, "qk_layer_norms_perceiver": qk_norm}
    return IdeficsConfig(vision_config={"embed_dim": 32, **TINY_VISION}, perceiver_config=perceiver, hidden_size=32,
                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50)


def tiny_idefics2_config() -> Idefics2Config:
    text = {"model_type": "mistral", "hidden_size": 32, "intermediate_size": 80, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 50, "rms_norm_eps": 1e-5}
    perceiver = {"hidden_size": 32, "resampler_n_latents": 8, "resampler_depth": 2, "resampler_n_heads": 4,
                 "resampler_head_dim": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-5}
    return Idefics2Config(vision_config={"hidden_size": 24, **TINY_VISION}, text_config=text,
                          perceiver_config=perceiver)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_idefics_perceiver_matches_transformers(qk_norm):
    config = tiny_idefics_config(qk_norm)
    pc = config.perceiver_config
    hf = randomize(IdeficsPerceiverResampler(config, 32, pc.resampler_depth, pc.resampler_n_heads,
                                             pc.resampler_head_dim, pc.resampler_n_latents))
    ours = load_idefics_perceiver(hf.state_dict(), config).eval()
    assert ours.num_tokens(20) == 8 and ours.out_proj is None and ours.time_emb is None
    media = torch.randn(3, 20, 32)  # 3 images of 20 patches
    with torch.no_grad():
        torch.testing.assert_close(ours(media), hf(media), atol=1e-5, rtol=1e-5)


def test_idefics2_connector_matches_transformers_with_a_media_mask():
    config = tiny_idefics2_config()
    hf = randomize(Idefics2Connector(config))
    ours = load_idefics2_connector(hf.state_dict(), config).eval()
    assert ours.layers[0].attn.kv_heads == 2 and ours.num_tokens(16) == 8  # grouped-query attention, 4 heads
    media = torch.randn(3, 16, 24)  # 3 images of 16 patches at the vision width 24
    mask = torch.ones(3, 16, dtype=torch.long)
    mask[1, 10:] = 0  # the second image is padded after 10 patches, the third after 4
    mask[2, 4:] = 0
    with torch.no_grad():
        ref = hf(media, attention_mask=mask)
        got = ours(media, media_mask=mask.bool())
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        # the mask matters: padded patches are invisible to ours as to transformers
        assert not torch.allclose(ours(media)[2], got[2], atol=1e-3)
        media[2, 4:] = torch.randn(12, 24)
        torch.testing.assert_close(ours(media, media_mask=mask.bool()), got, atol=1e-6, rtol=0)


def test_loader_takes_a_prefixed_checkpoint_and_rejects_a_wrong_config():
    config = tiny_idefics_config(qk_norm=False)
    pc = config.perceiver_config
    hf = randomize(IdeficsPerceiverResampler(config, 32, 2, 2, 16, 8))
    checkpoint = {f"model.perceiver_resampler.{k}": v for k, v in hf.state_dict().items()}
    checkpoint["model.embed_tokens.weight"] = torch.zeros(50, 32)  # another module's weight, outside the prefix
    ours = load_idefics_perceiver(checkpoint, config, prefix="model.perceiver_resampler.").eval()
    media = torch.randn(2, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(media), hf(media), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"no weight starts with prefix 'vision\.'"):
        load_idefics_perceiver(checkpoint, config, prefix="vision.")
    pc.resampler_depth = 1  # the checkpoint has 2 layers: layer 1's weights have no slot
    with pytest.raises(ValueError, match=r"blocks\.1\."):
        load_idefics_perceiver(hf.state_dict(), config)
