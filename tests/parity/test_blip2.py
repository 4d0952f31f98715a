"""Parity with transformers' BLIP-2: ``Blip2ForImageTextRetrieval`` (ITM logits, ITC similarities) and
``Blip2ForConditionalGeneration`` loaded with ``VLM.from_transformers`` (logits; with OPT the whole user path:
processor ids, logits, greedy tokens), tiny random models, fp32."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    Blip2ForConditionalGeneration,
    Blip2ForImageTextRetrieval,
    Blip2Processor,
    BlipImageProcessorPil,
    LlamaConfig,
    OPTConfig,
)

from tests.conftest import WORDS
from tests.parity.blip_user_path import bos_tokenizer, check_user_path, images
from tests.parity.test_qformer_parity import TINY_TEXT, tiny_blip2_config
from vlfuse import VLM
from vlfuse.convert.blip2 import load_blip2_qformer
from vlfuse.data.tokenizer import build_tokenizer
from vlfuse.objectives.itc import image_features, similarity, text_features
from vlfuse.objectives.itm import itm_logits


def test_retrieval_itm_logits_and_itc_similarities_match_transformers():
    cfg = tiny_blip2_config(text_input=True)
    torch.manual_seed(0)
    hf = Blip2ForImageTextRetrieval(cfg).eval()
    with torch.no_grad():
        hf.query_tokens.normal_()  # transformers initialises them to zero; any values must match
    ours = load_blip2_qformer(hf.state_dict(), cfg).eval()
    pixels = torch.randn(3, 3, 8, 8)
    ids = torch.randint(0, 40, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    with torch.no_grad():
        ref_itm = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True)
        ref_itc = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask, use_image_text_matching_head=False)
        image = hf.vision_model(pixel_values=pixels).last_hidden_state  # (B, P, Dv)
        got_itm = itm_logits(ours, image, ids, mask)
        queries, text = ours.encode(image, ids, mask, "unimodal")
        got_itc = similarity(image_features(ours.heads, queries), text_features(ours.heads, text))
    torch.testing.assert_close(got_itm, ref_itm.logits_per_image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_itc, ref_itc.logits_per_image, atol=1e-5, rtol=1e-5)
    assert got_itc.shape == (3, 3) and not torch.allclose(got_itm[0], got_itm[1])


def _save_tiny_blip2(path):
    tok = build_tokenizer(WORDS)
    cfg = tiny_blip2_config()
    text = {k: v for k, v in TINY_TEXT.items() if k not in ("model_type", "vocab_size")}
    cfg.text_config = LlamaConfig(vocab_size=len(tok), **text)
    cfg.image_token_index = tok.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    hf = Blip2ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        hf.query_tokens.normal_()
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return hf, tok


def test_conditional_generation_logits_match_transformers(tmp_path):
    hf, tok = _save_tiny_blip2(tmp_path)
    ours = VLM.from_transformers(str(tmp_path)).eval()
    assert ours.visual_tokens == 6 and ours.encoder.num_patches(8, 8) == 17  # Q queries; 16 patches + CLS
    image_id = tok.convert_tokens_to_ids("<image>")
    ids = [image_id] * 6 + tok("what color is the circle ?", add_special_tokens=False).input_ids
    input_ids = torch.tensor([ids, ids])
    mask = torch.ones_like(input_ids)
    pixels = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=input_ids, attention_mask=mask).logits
        got = ours(input_ids, attention_mask=mask, pixel_values=pixels).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[0, -1], got[1, -1])  # the two images give different answers
    # the converted model saves and loads as a vlfuse model (no transformers folder needed)
    ours.save_pretrained(str(tmp_path / "vlfuse"))
    again = VLM.from_pretrained(str(tmp_path / "vlfuse")).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids, attention_mask=mask, pixel_values=pixels).logits, got,
                                   rtol=0, atol=0)


def save_blip2_opt(path):
    """A tiny BLIP-2 with an OPT LLM saved as transformers saves it: model, tokenizer, Blip2Processor."""
    tok = bos_tokenizer()
    cfg = tiny_blip2_config()
    cfg.text_config = OPTConfig(vocab_size=len(tok), hidden_size=16, num_attention_heads=2, ffn_dim=32,
                                num_hidden_layers=2, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg.image_token_index = tok.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    hf = Blip2ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        hf.query_tokens.normal_()
    hf.save_pretrained(path)
    proc = Blip2Processor(BlipImageProcessorPil(size={"height": 8, "width": 8}), tok, num_query_tokens=6)
    proc.save_pretrained(path)
    return hf, proc


@pytest.mark.parametrize(("side", "n"), [("left", 3), ("left", 2), ("right", 3)])
def test_blip2_opt_user_path_matches_transformers(tmp_path, side, n):
    hf, proc = save_blip2_opt(tmp_path)
    ours = VLM.from_transformers(str(tmp_path)).eval()
    assert ours.llm.config.model_type == "opt" and ours.config.image.resize == "stretch"
    check_user_path(ours, hf, proc, side, n)
    ours.save_pretrained(str(tmp_path / "vlfuse"))
    check_user_path(VLM.from_pretrained(str(tmp_path / "vlfuse")).eval(), hf, proc, side, n)


def test_blip2_prompts_hold_no_image_placeholder(tmp_path):
    save_blip2_opt(tmp_path)
    proc = VLM.from_transformers(str(tmp_path)).processor()
    with pytest.raises(ValueError, match="before the text itself"):
        proc(text=["<image> what ?"], images=[images(1)])
    with pytest.raises(ValueError, match="at most one image per prompt"):
        proc(text=["what ?"], images=[images(2)])
