"""Parity with transformers' CLIPModel and SiglipModel: tiny random models, saved with their tokenizer and image
processor, load into vlfuse's DualEncoder with equal embeddings, logits and loss (fp32, atol 1e-5)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, SiglipConfig, SiglipImageProcessor, SiglipModel

from tests.conftest import WORDS
from vlfuse.data.tokenizer import build_tokenizer
from vlfuse.kinds.dual_encoder import DualEncoder

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
          "image_size": 8, "patch_size": 2}
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 16}
TEXTS = ["what color is the circle ?", "a red square", "blue", "the circle is left of the square and red"]


def _save_clip(path, eos_token_id=None):
    tok = build_tokenizer(WORDS)
    text = {**TEXT, "vocab_size": len(tok), "eos_token_id": eos_token_id or tok.eos_token_id,
            "bos_token_id": tok.bos_token_id, "pad_token_id": tok.pad_token_id}
    torch.manual_seed(0)
    hf = CLIPModel(CLIPConfig(vision_config=VISION, text_config=text, projection_dim=24)).eval()
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8}).save_pretrained(path)
    return hf, tok


def _save_siglip(path):
    tok = build_tokenizer(WORDS)
    text = {**TEXT, "vocab_size": len(tok), "projection_size": 32, "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id}
    torch.manual_seed(0)
    hf = SiglipModel(SiglipConfig(vision_config=VISION, text_config=text)).eval()
    with torch.no_grad():  # transformers initialises both at zero: give them values a mistake would show
        hf.logit_scale.fill_(1.3)
        hf.logit_bias.fill_(-2.5)
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    SiglipImageProcessor(size={"height": 8, "width": 8}).save_pretrained(path)
    return hf, tok


def _images(n=4):
    g = torch.Generator().manual_seed(1)
    return [Image.fromarray((torch.rand(8, 8, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


def _compare(hf, ours, batch):
    with torch.no_grad():
        ref = hf(**batch, return_loss=True)
        got = ours(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], return_loss=True)
    for name in ("image_embeds", "text_embeds", "logits_per_image", "logits_per_text", "loss"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), atol=1e-5, rtol=1e-5, msg=name)
    return got


@pytest.mark.parametrize("legacy_eos", [False, True])
def test_clip_matches_transformers(tmp_path, legacy_eos):
    hf, tok = _save_clip(tmp_path, eos_token_id=2 if legacy_eos else None)  # 2: transformers' pre-#24773 rule
    ours = DualEncoder.from_transformers(str(tmp_path)).eval()
    batch = ours.processor()(text=TEXTS, images=_images())
    assert (batch["input_ids"] == tok.eos_token_id).any(dim=1).all()  # every text ends with EOS, pooled there
    assert batch["input_ids"].shape[1] < 16  # CLIP: padded to the longest text only
    got = _compare(hf, ours, batch)
    # CLIP's normalisation came from the saved image processor
    assert ours.encoder.image_mean == tuple(CLIPImageProcessor().image_mean)
    assert got.logits_per_image.shape == (4, 4)


def test_clip_pools_at_end_of_text_not_last_position(tmp_path):
    _hf, tok = _save_clip(tmp_path)
    ours = DualEncoder.from_transformers(str(tmp_path)).eval()
    proc = ours.processor()
    short = proc.texts(["blue"])
    long = proc.pad([short["input_ids"][0].tolist() + [tok.pad_token_id] * 3])
    long["attention_mask"][:, :short["input_ids"].shape[1]] = 1
    with torch.no_grad():
        a = ours.encode_texts(short["input_ids"], short["attention_mask"])
        b = ours.encode_texts(long["input_ids"], long["attention_mask"])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)  # causal text: padding after EOS cannot change it


def test_siglip_matches_transformers_with_max_length_padding(tmp_path):
    hf, _tok = _save_siglip(tmp_path)
    ours = DualEncoder.from_transformers(str(tmp_path)).eval()
    assert ours.config.loss == "sigmoid" and ours.config.text.padding == "max_length"
    batch = ours.processor()(text=TEXTS, images=_images())
    assert batch["input_ids"].shape == (4, 16)  # padded to the tower's full length, as SigLIP was trained
    got = _compare(hf, ours, batch)
    assert float(ours.logit_bias.detach()) == pytest.approx(-2.5)
    # SigLIP pools the last position: padding to the longest text instead gives another embedding (the zero-shot
    # trap of running SigLIP with padding="longest")
    short = ours.processor().pad([ours.processor().text_ids(TEXTS[2])])
    short["input_ids"] = short["input_ids"][:, : len(ours.processor().text_ids(TEXTS[2]))]
    short["attention_mask"] = short["attention_mask"][:, : short["input_ids"].shape[1]]
    with torch.no_grad():
        unpadded = ours.encode_texts(short["input_ids"], short["attention_mask"])
        ref_unpadded = hf.get_text_features(input_ids=short["input_ids"]).pooler_output
    assert (unpadded[0] - got.text_embeds[2]).abs().max() > 1e-3
    torch.testing.assert_close(unpadded[0], torch.nn.functional.normalize(ref_unpadded, dim=-1)[0], atol=1e-5,
                               rtol=1e-5)


def test_save_and_reload_keeps_outputs(tmp_path):
    _save_siglip(tmp_path / "hf")
    ours = DualEncoder.from_transformers(str(tmp_path / "hf")).eval()
    ours.save_pretrained(str(tmp_path / "ours"))
    from vlfuse.kinds import load_model

    again = load_model(tmp_path / "ours").eval()
    batch = ours.processor()(text=TEXTS, images=_images())
    with torch.no_grad():
        a = ours(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits_per_image
        b = again(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits_per_image
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert again.config.text.padding == "max_length"


def test_from_transformers_refuses_other_models(tmp_path):
    from tests.parity.test_llava import _save_tiny_llava

    _save_tiny_llava(tmp_path)
    with pytest.raises(ValueError, match="loads clip, siglip models"):
        DualEncoder.from_transformers(str(tmp_path))
