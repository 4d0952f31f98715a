"""Parity with transformers' LLaVA: a tiny random LlavaForConditionalGeneration loads into vlfuse with equal logits."""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from tests.conftest import TINY_CLIP_VISION, TINY_LLAMA, WORDS
from vlfuse import VLM
from vlfuse.data.tokenizer import build_tokenizer


def _save_tiny_llava(path):
    tok = build_tokenizer(WORDS)
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = {k: v for k, v in TINY_CLIP_VISION.items() if k != "model_type"}
    text = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    config = LlavaConfig(vision_config=CLIPVisionConfig(**vision), text_config=LlamaConfig(vocab_size=len(tok), **text),
                         image_token_id=image_id, vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu")
    torch.manual_seed(0)
    hf = LlavaForConditionalGeneration(config).eval()
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return hf, tok


def test_llava_logits_match_transformers(tmp_path):
    hf, tok = _save_tiny_llava(tmp_path)
    ours = VLM.from_transformers(str(tmp_path)).eval()
    image_id = tok.convert_tokens_to_ids("<image>")
    v = ours.visual_tokens
    assert v == 16  # (8 / 2) ** 2 patches, CLS dropped
    # two images at different positions: "what <image>x16 is the <image>x16 color ?"
    words = tok("what", add_special_tokens=False).input_ids
    ids = words + [image_id] * v + tok("is the", add_special_tokens=False).input_ids + [image_id] * v
    ids += tok("color ?", add_special_tokens=False).input_ids
    input_ids = torch.tensor([ids])
    pixels = torch.randn(2, 3, 8, 8)
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        ref = hf(input_ids=input_ids, pixel_values=pixels, attention_mask=mask).logits
        got = ours(input_ids, attention_mask=mask, pixel_values=pixels).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the images matter: a different second image changes the logits after it
    with torch.no_grad():
        other = ours(input_ids, attention_mask=mask, pixel_values=torch.stack([pixels[0], -pixels[1]])).logits
    assert not torch.allclose(other[0, -1], got[0, -1])
