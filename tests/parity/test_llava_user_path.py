"""LLaVA on the user's path, against transformers' own processor and model on the same raw prompts and PIL images.

``model = VLM.from_transformers(folder); batch = model.processor()(text=..., images=..., padding_side=...)``, then
``model(**batch)`` and ``generate_ids``, compared with ``AutoProcessor`` / ``LlavaForConditionalGeneration`` on a
tiny random checkpoint saved with its ``LlavaProcessor``: each row's tokens (BOS, the ``<image>`` expansion count,
padding on the side asked for), the pixels, the fp32 logits at every real position and 16 greedy tokens; then the
same after ``save_pretrained`` + ``VLM.from_pretrained``. Shapes: ``B`` prompts, ``S`` padded length, ``W`` vocab.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from tests.parity.test_llava import _save_tiny_llava
from vlfuse import VLM
from vlfuse.generate import generate_ids

try:  # transformers 5 without torchvision: the PIL backends (the classes transformers itself falls back to)
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    from transformers import SiglipImageProcessorPil as SiglipImageProcessor
except ImportError:
    from transformers import CLIPImageProcessor, SiglipImageProcessor

# images per prompt 2 / 1 / 0 / 3: two adjacent (<image><image>), one inside the text, none, three interleaved
TEXTS = ["<image><image>\nwhat color is the circle ?", "is the <image> left of the square ?",
         "what color is the square ?", "<image> the circle and <image> the square and <image> a ?"]
SIZES = [[(12, 20), (9, 9)], [(30, 11)], [], [(8, 8), (17, 13), (10, 26)]]  # (W, H): tall, square, wide, ...
GQA = {"num_attention_heads": 4, "num_key_value_heads": 1}  # 4 query heads share one K/V head
LLAMA3 = {"rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}
LINEAR = {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}}


def _clip_processor():
    """CLIP's processor with the short side resized to 10 px, then the 8 px centre crop the tower takes."""
    return CLIPImageProcessor(size={"shortest_edge": 10}, crop_size={"height": 8, "width": 8})


def _siglip_processor():
    """SigLIP's: both sides to 8 px, bilinear (PIL code 2), normalised with 0.5 / 0.5."""
    return SiglipImageProcessor(size={"height": 8, "width": 8}, resample=2)


def _images():
    rng = np.random.default_rng(0)
    return [[Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in g] for g in SIZES]


def _reference(hf, hproc, groups, side):
    """transformers' batch, logits ``(B, S, W)`` and 16 greedy new tokens ``(B, G)`` (left padding only)."""
    flat = [im for g in groups for im in g]
    ref = hproc(text=TEXTS, images=flat, padding=True, padding_side=side, return_tensors="pt")
    mask = ref["attention_mask"]
    # the positions transformers' generate gives a padded batch (a bare forward would count the left padding)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # (B, S)
    with torch.no_grad():
        logits = hf(**ref, position_ids=positions).logits
    new = None
    if side == "left":
        eos, image_id = hproc.tokenizer.eos_token_id, hf.config.image_token_id
        # vlfuse never generates the image placeholder (generate_ids); the same rule for the reference
        out = hf.generate(**ref, max_new_tokens=16, do_sample=False, eos_token_id=eos, pad_token_id=eos,
                          suppress_tokens=[image_id])
        new = out[:, ref["input_ids"].shape[1]:]
    return ref, logits, new


def _check_user_path(model, ref, logits, new, groups, side):
    """``model``'s own user path gives transformers' batch, logits and greedy tokens."""
    batch = model.processor()(text=TEXTS, images=groups, padding_side=side)
    assert batch["image_counts"].tolist() == [len(g) for g in groups]
    assert torch.equal(batch["input_ids"], ref["input_ids"])  # BOS, expansion counts and padding side
    assert torch.equal(batch["attention_mask"], ref["attention_mask"])
    torch.testing.assert_close(batch["pixel_values"], ref["pixel_values"], atol=1e-5, rtol=0)
    with torch.no_grad():
        got = model(**batch).logits  # (B, S, W)
    real = batch["attention_mask"].bool()  # (B, S)
    torch.testing.assert_close(got[real], logits[real], atol=1e-5, rtol=1e-5)
    if new is not None:
        ours = generate_ids(model, batch, max_new_tokens=16, eos_token_id=model.tokenizer.eos_token_id)
        assert ours.tolist() == new.tolist()


def _run(tmp_path, side="left", **llava):
    hf, _ = _save_tiny_llava(tmp_path / "hf", **llava)
    hproc = AutoProcessor.from_pretrained(str(tmp_path / "hf"))
    groups = _images()
    ref, logits, new = _reference(hf, hproc, groups, side)
    assert (ref["attention_mask"][:, -1 if side == "right" else 0] == 0).any()  # padded on the side asked for
    model = VLM.from_transformers(str(tmp_path / "hf")).eval()
    _check_user_path(model, ref, logits, new, groups, side)
    model.save_pretrained(str(tmp_path / "vlfuse"))
    back = VLM.from_pretrained(str(tmp_path / "vlfuse")).eval()
    assert back.config.image == model.config.image
    _check_user_path(back, ref, logits, new, groups, side)
    return model, ref, hf


@pytest.mark.parametrize("side", ["left", "right"])
def test_clip_llava_user_path_equals_transformers(tmp_path, side):
    model, ref, _ = _run(tmp_path, side, image_processor=_clip_processor())
    cfg = model.config.image
    assert (cfg.resize, cfg.resample, cfg.shortest_edge) == ("crop", "bicubic", 10)  # read from processor_config
    bos, image_id = model.tokenizer.bos_token_id, model.injector.image_token_id
    real = ref["input_ids"][ref["attention_mask"].bool()]
    assert int((real == bos).sum()) == len(TEXTS)  # one BOS per prompt, as the Llama tokenizer adds it
    assert int((ref["input_ids"] == image_id).sum()) == 16 * sum(map(len, SIZES))  # (8 / 2)^2 patches, CLS dropped


@pytest.mark.parametrize("text", [GQA, LLAMA3, LINEAR], ids=["gqa", "rope-llama3", "rope-linear"])
def test_llava_text_configs_on_the_user_path_equal_transformers(tmp_path, text):
    model, _, hf = _run(tmp_path, image_processor=_clip_processor(), text=text)
    for key, value in text.items():
        assert getattr(model.llm.config, key) == value
    inv_freq = [dict(m.named_buffers())[k] for m in (model, hf) for k in dict(m.named_buffers()) if "inv_freq" in k]
    torch.testing.assert_close(inv_freq[0], inv_freq[1], atol=0, rtol=0)  # the scaled RoPE frequencies


def test_siglip_llava_user_path_equals_transformers(tmp_path):
    model, ref, _ = _run(tmp_path, tower="siglip", image_processor=_siglip_processor())
    assert model.visual_tokens == 15  # 16 patches; "default" drops the first (SigLIP has no CLS)
    assert (model.config.image.resize, model.config.image.resample) == ("stretch", "bilinear")
    assert model.encoder.image_mean == (0.5, 0.5, 0.5)
    assert int((ref["input_ids"] == model.injector.image_token_id).sum()) == 15 * sum(map(len, SIZES))
