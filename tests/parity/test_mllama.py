"""Parity with transformers' Llama 3.2 Vision: a tiny random ``MllamaForConditionalGeneration`` loads with equal logits.

Interleaved prompt with two images; 5 text layers of which 1 and 3 are cross-attention layers (grouped-query
attention, q/k RMSNorm, tanh gates, the FFW zeroed on rows that see no image). First one tile per image, given as
tensors; then the user path: raw prompts and PIL images of different aspect ratios through ``model.processor()``
against ``MllamaProcessor``, 4 tiles per image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil
from transformers.models.mllama.processing_mllama import (
    convert_sparse_cross_attention_mask_to_dense,
    get_cross_attention_token_mask,
)

import vlfuse.generate
from tests.conftest import WORDS
from tests.parity.test_perceiver_parity import randomize
from vlfuse import VLM
from vlfuse.convert.mllama import mllama_layer_plan
from vlfuse.data.tiles import arrangements
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


# --- the user path: tiled images, raw prompts, MllamaProcessor ----------------------------------------------------

HEADER = ["user", "header", "assistant", "square", "look", "here", "now"]
IMAGE = "<|image|>"
TILED = {**VISION, "max_num_tiles": 4, "supported_aspect_ratios": [list(r) for r in arrangements(4)]}


def save_tiled_mllama(path, rope: dict | None = None):
    """A random Mllama of 4 tiles per image, saved with its MllamaProcessor (tokenizer + PIL image processor)."""
    tok = build_tokenizer(WORDS + HEADER, image_token=IMAGE)
    text = {"vocab_size": len(tok), "hidden_size": 32, "num_hidden_layers": 5, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 64, "cross_attention_layers": [1, 3],
            "max_position_embeddings": 64, "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id}
    if rope:
        text["rope_parameters"] = rope
    config = MllamaConfig(vision_config=TILED, text_config=text, image_token_index=tok.convert_tokens_to_ids(IMAGE))
    torch.manual_seed(0)
    hf = randomize(MllamaForConditionalGeneration(config))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("gate"):  # open every gate: tile embeddings and cross-attention layers must matter
                p.fill_(0.7 if "attn" in name or "vision" in name else -0.6)
    hf.save_pretrained(path)
    image_proc = MllamaImageProcessorPil(size={"height": 8, "width": 8}, max_image_tiles=4)
    MllamaProcessor(image_processor=image_proc, tokenizer=tok).save_pretrained(path)
    return hf, MllamaProcessor(image_processor=image_proc, tokenizer=tok)


def picture(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


WIDE, TALL, SQUARE, BIG = picture(20, 9, 1), picture(7, 26, 2), picture(9, 9, 3), picture(30, 31, 4)
CASES = {  # text before the first image in every prompt; images of different tile counts (3, 4, 4, 4)
    "tiles": (["user header <|image|> what color is the circle ?"], [[WIDE]]),
    "adjacent": (["user header <|image|> what color ?", "<s>user header <|image|><|image|> is the square red ?"],
                 [[WIDE], [TALL, SQUARE]]),
    "interleaved": (["user header look <|image|> here <|image|> now what color ?", "<|image|> user is it red ?"],
                    [[BIG, WIDE], [TALL]]),
}


def real_ids(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    return [row[m.bool()].tolist() for row, m in zip(ids, mask)]


def greedy_pair(hf, ref_in, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """16 greedy tokens of transformers' ``generate`` and of vlfuse's ``generate_ids``, EOS off on both sides (a
    random model says EOS early; the 16 tokens are then all compared)."""
    ref = hf.generate(**ref_in, max_new_tokens=16, do_sample=False, eos_token_id=None)
    new = vlfuse.generate.generate_ids(model, batch, max_new_tokens=16, eos_token_id=-1)  # -1: no token stops
    assert hf.config.image_token_index not in ref.tolist()  # vlfuse never generates the image token
    return ref[:, ref_in["input_ids"].shape[1]:], new


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("case", list(CASES))
def test_tiled_mllama_user_path_matches_transformers(tmp_path, case, side):
    hf, hf_proc = save_tiled_mllama(tmp_path)
    model = VLM.from_transformers(str(tmp_path)).eval()
    text, images = CASES[case]
    batch = model.processor()(text=text, images=images, padding_side=side)
    ref_in = hf_proc(text=text, images=images, padding=True, padding_side=side, return_tensors="pt")
    assert real_ids(batch["input_ids"], batch["attention_mask"]) == real_ids(ref_in["input_ids"],
                                                                               ref_in["attention_mask"])
    assert torch.equal(batch["input_ids"], ref_in["input_ids"])
    torch.testing.assert_close(batch["pixel_values"], ref_in["pixel_values"].flatten(0, 1), atol=0, rtol=0)
    assert torch.equal(batch["aspect_ratio_ids"], ref_in["aspect_ratio_ids"])
    assert torch.equal(batch["aspect_ratio_mask"], ref_in["aspect_ratio_mask"])
    with torch.no_grad():
        ref = hf(**ref_in).logits  # (B, T, vocab)
        got = model(**batch).logits[..., : ref.shape[-1]]
    real = batch["attention_mask"].bool()  # (B, T)
    torch.testing.assert_close(got[real], ref[real], atol=2e-5, rtol=1e-5)
    if side == "left":
        ref_gen, new = greedy_pair(hf, ref_in, model, batch)
        assert torch.equal(new, ref_gen) and new.shape == (len(text), 16)
        model.save_pretrained(str(tmp_path / "saved"))
        again = VLM.from_pretrained(str(tmp_path / "saved")).eval()
        again_batch = again.processor()(text=text, images=images, padding_side=side)
        with torch.no_grad():
            logits = again(**again_batch).logits[..., : ref.shape[-1]]
        torch.testing.assert_close(logits[real], ref[real], atol=2e-5, rtol=1e-5)
        assert torch.equal(vlfuse.generate.generate_ids(again, again_batch, 16, eos_token_id=-1), new)


def test_tiled_mllama_with_llama3_rope_scaling(tmp_path):
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
    hf, hf_proc = save_tiled_mllama(tmp_path, rope)
    model = VLM.from_transformers(str(tmp_path)).eval()
    assert model.llm.config.rope_parameters["rope_type"] == "llama3"
    text, images = CASES["adjacent"]
    batch = model.processor()(text=text, images=images, padding_side="left")
    ref_in = hf_proc(text=text, images=images, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        ref = hf(**ref_in).logits
        got = model(**batch).logits[..., : ref.shape[-1]]
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], ref[real], atol=2e-5, rtol=1e-5)
    ref_gen, new = greedy_pair(hf, ref_in, model, batch)
    assert torch.equal(new, ref_gen) and new.shape == (2, 16)


def test_tiled_mllama_projects_visual_kv_once_and_names_bad_inputs(tmp_path):
    save_tiled_mllama(tmp_path)
    model = VLM.from_transformers(str(tmp_path)).eval()
    text, images = CASES["interleaved"]
    batch = model.processor()(text=text, images=images, padding_side="left")
    calls = []
    for block in model.injector.blocks:
        project = block.attn.project_media
        block.attn.project_media = lambda media, project=project: calls.append(media.shape) or project(media)
    vlfuse.generate.generate_ids(model, batch, max_new_tokens=6, eos_token_id=-1)
    assert calls == [(2, 2 * 4 * 17, 32)] * 2  # once per block per sequence: (B, N_max * T * P, Dt), no decode step
    with pytest.raises(ValueError, match=r"give tiles \(N, T, C, H, W\)"):
        model.encoder(torch.zeros(2, 3, 8, 8))  # plain images need max_num_tiles 1
    short = {**batch, "aspect_ratio_ids": batch["aspect_ratio_ids"][:, :1]}
    with pytest.raises(ValueError, match="2 aspect_ratio_ids and 16 aspect_ratio_mask entries"):
        model(**short)


def test_single_tile_model_on_the_generic_processor_path(tmp_path):
    """``encode_prompt`` + ``collate`` (training, ``model.generate``) tile as transformers with max_image_tiles 1."""
    hf, _ = save_tiny_mllama(tmp_path)
    model = VLM.from_transformers(str(tmp_path)).eval()
    proc, image = model.processor(), picture(20, 9, 5)
    batch = proc.collate([proc.encode_prompt("what <image> color is the circle ?", [image])], "left")
    ref_px = MllamaImageProcessorPil(size={"height": 8, "width": 8}, max_image_tiles=1,
                                     image_mean=list(model.encoder.image_mean), image_std=list(model.encoder.image_std))
    ref_px = ref_px(images=[[image]], return_tensors="pt")
    assert torch.equal(batch["pixel_values"], ref_px["pixel_values"].flatten(0, 1))  # (1, 1, 3, 8, 8)
    ids = batch["input_ids"]
    sparse = [get_cross_attention_token_mask(ids[0].tolist(), model.injector.image_token_id)]
    cross = torch.from_numpy(convert_sparse_cross_attention_mask_to_dense(sparse, [[1]], 1, ids.shape[1]))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=batch["attention_mask"], pixel_values=ref_px["pixel_values"],
                 aspect_ratio_ids=ref_px["aspect_ratio_ids"], aspect_ratio_mask=ref_px["aspect_ratio_mask"],
                 cross_attention_mask=cross).logits
        got = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[..., : ref.shape[-1]]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert isinstance(model.generate("what <image> color ?", [image], max_new_tokens=3), str)
