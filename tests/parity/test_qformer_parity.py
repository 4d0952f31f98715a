"""Parity with transformers' ``Blip2QFormerModel``: its weights load into the vlfuse Q-Former, equal query outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import Blip2Config, Blip2QFormerConfig, Blip2QFormerModel

from vlfuse.connectors.qformer import QFormer, QFormerConfig
from vlfuse.convert.blip2 import load_blip2_qformer

DV = 24  # vision width the cross-attention reads
TINY_TEXT = {"model_type": "llama", "hidden_size": 16, "num_attention_heads": 2, "num_key_value_heads": 2,
             "intermediate_size": 32, "num_hidden_layers": 1, "vocab_size": 30}


def tiny_blip2_config(text_input: bool = False, layers: int = 3, frequency: int = 2) -> Blip2Config:
    qformer = Blip2QFormerConfig(vocab_size=40, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                                 intermediate_size=48, max_position_embeddings=20, cross_attention_frequency=frequency,
                                 encoder_hidden_size=DV, use_qformer_text_input=text_input)
    return Blip2Config(vision_config={"hidden_size": DV, "intermediate_size": 48, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "image_size": 8, "patch_size": 2,
                                      "initializer_range": 0.02},
                       qformer_config=qformer.to_dict(), text_config=TINY_TEXT,
                       num_query_tokens=6, image_text_hidden_size=20)


@pytest.mark.parametrize("layers,frequency", [(3, 2), (4, 1), (2, 3)])
def test_query_outputs_match_transformers(layers, frequency):
    cfg = tiny_blip2_config(layers=layers, frequency=frequency)
    torch.manual_seed(0)
    hf = Blip2QFormerModel(cfg.qformer_config).eval()
    queries = torch.randn(1, cfg.num_query_tokens, 32)
    state = {"query_tokens": queries, **{f"qformer.{k}": v for k, v in hf.state_dict().items()}}
    ours = load_blip2_qformer(state, cfg, out_dim=16).eval()
    image = torch.randn(3, 17, DV)  # (B, P, Dv)
    with torch.no_grad():
        ref = hf(query_embeds=queries.expand(3, -1, -1), encoder_hidden_states=image).last_hidden_state
        got, text = ours.encode(image)
    assert text is None and got.shape == (3, 6, 32)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    cross = [layer.cross_attn is not None for layer in ours.layers]
    assert cross == [i % frequency == 0 for i in range(layers)]
    # as a connector: the projected query outputs, Q tokens whatever P is
    assert ours(image).shape == (3, 6, 16) and ours.num_tokens(17) == ours.num_tokens(1000) == 6


def test_text_input_layers_match_transformers_in_a_joint_pass():
    cfg = tiny_blip2_config(text_input=True)
    torch.manual_seed(1)
    hf = Blip2QFormerModel(cfg.qformer_config).eval()
    words = torch.randn(40, 32)
    pos = torch.randn(20, 32)
    state = {"query_tokens": torch.randn(1, 6, 32), "embeddings.word_embeddings.weight": words,
             "embeddings.position_embeddings.weight": pos, "itm_head.weight": torch.randn(2, 32),
             "itm_head.bias": torch.randn(2), **{f"{n}_projection.{p}": torch.randn(20, 32)[:, 0] if p == "bias"
                                                  else torch.randn(20, 32) for n in ("vision", "text")
                                                  for p in ("weight", "bias")},
             **{f"qformer.{k}": v for k, v in hf.state_dict().items()}}
    ours = load_blip2_qformer(state, cfg).eval()
    ids = torch.randint(0, 40, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    image = torch.randn(2, 9, DV)
    embeds = torch.cat([state["query_tokens"].expand(2, -1, -1), words[ids] + pos[:7]], dim=1)
    full_mask = torch.cat([torch.ones(2, 6, dtype=torch.long), mask], dim=1)
    with torch.no_grad():
        ref = hf(query_embeds=embeds, query_length=6, attention_mask=full_mask,
                 encoder_hidden_states=image).last_hidden_state
        q, t = ours.encode(image, ids, mask, "bidirectional")
    torch.testing.assert_close(q, ref[:, :6], atol=1e-5, rtol=1e-5)
    real = mask.bool()
    torch.testing.assert_close(t[real], ref[:, 6:][real], atol=1e-5, rtol=1e-5)


def test_wrong_weights_and_inputs_are_clear_errors():
    cfg = tiny_blip2_config()
    hf = Blip2QFormerModel(cfg.qformer_config)
    with pytest.raises(ValueError, match="query_tokens"):
        load_blip2_qformer({f"qformer.{k}": v for k, v in hf.state_dict().items()}, cfg)
    qf = QFormer(QFormerConfig(hidden_size=32, layers=2, heads=4, intermediate_size=48, num_queries=4), 24, 16)
    with pytest.raises(ValueError, match=r"features \(B\*N, P, 24\)"):
        qf(torch.randn(2, 5, 23))
    with pytest.raises(ValueError, match="no text path"):
        qf.encode(torch.randn(2, 5, 24), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="must divide"):
        QFormerConfig(hidden_size=30, heads=4)
    with pytest.raises(ValueError, match="vision_width=10"):
        QFormer(QFormerConfig(vision_width=10, hidden_size=32, layers=1, heads=4, intermediate_size=8), 24, 16)
