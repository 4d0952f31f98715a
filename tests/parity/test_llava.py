"""Parity with transformers' LLaVA: a tiny random LlavaForConditionalGeneration loads into vlfuse with equal logits."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from tokenizers.processors import TemplateProcessing
from transformers import (
    AutoProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    SiglipVisionConfig,
)

from tests.conftest import TINY_CLIP_VISION, TINY_LLAMA, WORDS
from vlfuse import VLM
from vlfuse.data.tokenizer import build_tokenizer

try:  # transformers 5 without torchvision: the PIL backend (the class transformers itself falls back to)
    from transformers import SiglipImageProcessorPil as SiglipImageProcessor
except ImportError:
    from transformers import SiglipImageProcessor

TOWERS = {"clip": CLIPVisionConfig, "siglip": SiglipVisionConfig}


def _llama_tokenizer():
    """The built-in BPE that, like Llama's tokenizer, puts BOS before every text it encodes with special tokens."""
    tok = build_tokenizer(WORDS)
    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    return tok


def _save_tiny_llava(path, tower="clip", select="default", text=None, image_processor=None):
    """A random tiny ``LlavaForConditionalGeneration`` saved to ``path`` with its tokenizer; with
    ``image_processor``, the whole ``LlavaProcessor`` (tokenizer + that image processor) is saved as transformers
    saves it. ``text`` overrides keys of the Llama config (GQA, RoPE scaling)."""
    tok = _llama_tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = {k: v for k, v in TINY_CLIP_VISION.items() if k != "model_type"}
    llama = {**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"}, **(text or {})}
    config = LlavaConfig(vision_config=TOWERS[tower](**vision), text_config=LlamaConfig(vocab_size=len(tok), **llama),
                         image_token_id=image_id, vision_feature_layer=-2, vision_feature_select_strategy=select,
                         projector_hidden_act="gelu")
    torch.manual_seed(0)
    hf = LlavaForConditionalGeneration(config).eval()
    hf.save_pretrained(path)
    if image_processor is None:
        tok.save_pretrained(path)
    else:  # num_additional_image_tokens: CLIP's CLS, which SigLIP has not (as the released processors say)
        LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=vision["patch_size"],
                       vision_feature_select_strategy=select,
                       num_additional_image_tokens=int(tower == "clip")).save_pretrained(path)
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


@pytest.mark.parametrize(("select", "tokens"), [("default", 15), ("full", 16)])
def test_siglip_tower_features_and_token_count_match_transformers(tmp_path, select, tokens):
    """SigLIP has no CLS: ``default`` drops its first patch as transformers does, ``full`` keeps all 16."""
    hf, tok = _save_tiny_llava(tmp_path, tower="siglip", select=select, image_processor=SiglipImageProcessor(
        size={"height": 8, "width": 8}))
    ours = VLM.from_transformers(str(tmp_path)).eval()
    hproc = AutoProcessor.from_pretrained(str(tmp_path))
    image_id = tok.convert_tokens_to_ids("<image>")
    expanded = hproc(text="what <image> is", images=[Image.new("RGB", (8, 8))], return_tensors="pt")["input_ids"]
    assert ours.visual_tokens == tokens == int((expanded == image_id).sum())  # the processor's count is the model's
    pixels = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = hf.model.get_image_features(pixel_values=pixels).pooler_output  # 2 x (V, Dt)
        got = ours.encode_images(pixels)  # (2, V, Dt)
    torch.testing.assert_close(got, torch.stack(list(want)), atol=1e-5, rtol=1e-5)
    words = [tok(w, add_special_tokens=False).input_ids for w in ("what", "is the")]
    input_ids = torch.tensor([words[0] + [image_id] * tokens + words[1] + [image_id] * tokens])
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        ref = hf(input_ids=input_ids, pixel_values=pixels, attention_mask=mask).logits
        logits = ours(input_ids, attention_mask=mask, pixel_values=pixels).logits
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
