"""Parity with transformers' Llama 3.2 Vision: a tiny random ``MllamaForConditionalGeneration`` loads with equal logits.

Interleaved prompt with two images; 5 text layers of which 1 and 3 are cross-attention layers (grouped-query
attention, q/k RMSNorm, tanh gates, the FFW zeroed on rows that see no image); one tile per image.
"""

from __future__ import annotations

import torch
from transformers import MllamaConfig, MllamaForConditionalGeneration
from transformers.models.mllama.processing_mllama import (
    convert_sparse_cross_attention_mask_to_dense,
    get_cross_attention_token_mask,
)

from tests.conftest import WORDS
from tests.parity.test_perceiver_parity import randomize
from vlfuse import VLM
from vlfuse.convert.mllama import mllama_layer_plan
from vlfuse.data.tokenizer import build_tokenizer

VISION = {"hidden_size": 32, "image_size": 8, "patch_size": 2, "num_hidden_layers": 2, "num_global_layers": 1,
          "attention_heads": 2, "intermediate_size": 64, "vision_output_dim": 64, "intermediate_layers_indices": [0],
          "max_num_tiles": 1, "supported_aspect_ratios": [[1, 1]]}


def save_tiny_mllama(path):
    tok = build_tokenizer(WORDS)
    text = {"vocab_size": len(tok), "hidden_size": 32, "num_hidden_layers": 5, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 64, "cross_attention_layers": [1, 3],
            "max_position_embeddings": 64, "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id}
    image_id = tok.convert_tokens_to_ids("<image>")
    config = MllamaConfig(vision_config=VISION, text_config=text, image_token_index=image_id)
    torch.manual_seed(0)
    hf = randomize(MllamaForConditionalGeneration(config))
    with torch.no_grad():
        for i in text["cross_attention_layers"]:  # open gates: the cross-attention layers must matter
            layer = hf.model.language_model.layers[i]
            layer.cross_attn_attn_gate.fill_(0.7)
            layer.cross_attn_mlp_gate.fill_(-0.6)
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return hf, tok


def test_layer_plan_runs_each_cross_layer_before_the_next_self_layer():
    assert mllama_layer_plan(5, [1, 3]) == ([0, 2, 4], [1, 2])
    assert mllama_layer_plan(40, [3, 8, 13, 18, 23, 28, 33, 38])[1] == [3, 7, 11, 15, 19, 23, 27, 31]


def test_mllama_logits_match_transformers(tmp_path):
    hf, tok = save_tiny_mllama(tmp_path)
    ours = VLM.from_transformers(str(tmp_path)).eval()
    assert ours.injector.positions == [1, 2] and len(ours.llm.model.layers) == 3
    words = "what <image> color is the <image> circle ?".split()
    ids = torch.tensor([[tok.bos_token_id, *tok.convert_tokens_to_ids(words)]])
    image_id = tok.convert_tokens_to_ids("<image>")
    pixels = torch.randn(2, 3, 8, 8)
    sparse = [get_cross_attention_token_mask(ids[0].tolist(), image_id)]
    cross_mask = torch.from_numpy(convert_sparse_cross_attention_mask_to_dense(sparse, [[1, 1]], 1, ids.shape[1]))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, pixel_values=pixels[None, :, None],
                 aspect_ratio_ids=torch.ones(1, 2, dtype=torch.long), aspect_ratio_mask=torch.ones(1, 2, 1),
                 cross_attention_mask=cross_mask).logits  # (1, T, vocab)
        got = ours(ids, attention_mask=mask, pixel_values=pixels).logits  # (1, T, vocab + 8)
        torch.testing.assert_close(got[..., : ref.shape[-1]], ref, atol=1e-5, rtol=1e-5)
        assert (got[..., ref.shape[-1]:] == 0).all()  # Mllama's 8 extra embedding rows have no head rows
        moved = ours(ids, attention_mask=mask, pixel_values=torch.stack([pixels[0], -pixels[1]])).logits
    # the images matter; and, as in transformers' Mllama, the BOS row (before any image) reads every image
    second = words.index("<image>", 2) + 1
    assert not torch.allclose(moved[:, second:], got[:, second:], atol=1e-3)
    assert not torch.allclose(moved[:, 0], got[:, 0], atol=1e-3)
