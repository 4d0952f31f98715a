"""Loading real checkpoints: dtype / device, nothing left on ``meta``, the saved image processor is read.

``VLM.from_transformers`` and ``VLM.from_pretrained`` build with their parameters on ``meta`` and assign the
saved tensors; these tests pin that the result is the same model (logits, buffers, ties), in the dtype asked for.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from tests.conftest import TINY_LLAMA, tiny_vlm
from tests.parity.test_llava import _save_tiny_llava
from vlfuse import VLM


def _inputs(tok, visual_tokens: int):
    image_id = tok.convert_tokens_to_ids("<image>")
    ids = tok("what", add_special_tokens=False).input_ids + [image_id] * visual_tokens
    ids += tok("color is the circle ?", add_special_tokens=False).input_ids
    input_ids = torch.tensor([ids])
    return input_ids, torch.ones_like(input_ids), torch.randn(1, 3, 8, 8)


def _tensors(model):
    return [*model.named_parameters(), *model.named_buffers()]


def test_bf16_load_gives_bf16_weights_and_matches_transformers_in_bf16(tmp_path):
    _save_tiny_llava(tmp_path)
    ours = VLM.from_transformers(str(tmp_path), dtype=torch.bfloat16, device="cpu").eval()
    floats = [t for _, t in ours.named_parameters() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.bfloat16 for t in floats)
    assert ours.config.llm.dtype == "bfloat16"
    assert not [n for n, t in _tensors(ours) if t.device.type != "cpu"]  # nothing left on meta
    hf = LlavaForConditionalGeneration.from_pretrained(str(tmp_path), dtype=torch.bfloat16).eval()
    input_ids, mask, pixels = _inputs(ours.tokenizer, ours.visual_tokens)
    with torch.no_grad():
        ref = hf(input_ids=input_ids, pixel_values=pixels.bfloat16(), attention_mask=mask).logits
        got = ours(input_ids, attention_mask=mask, pixel_values=pixels).logits
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_default_dtype_follows_the_checkpoint(tmp_path):
    hf, _ = _save_tiny_llava(tmp_path / "fp32")
    hf.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tmp_path / "fp32" / name).is_file():
            (tmp_path / "bf16" / name).write_bytes((tmp_path / "fp32" / name).read_bytes())
    assert json.loads((tmp_path / "bf16" / "config.json").read_text()).get("dtype") == "bfloat16"
    bf16 = VLM.from_transformers(str(tmp_path / "bf16"))
    fp32 = VLM.from_transformers(str(tmp_path / "fp32"))
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}
    assert VLM.from_transformers(str(tmp_path / "bf16"), dtype="float32").llm.dtype == torch.float32
    with pytest.raises(ValueError, match="'float64' is not supported; choices: 'auto'"):
        VLM.from_transformers(str(tmp_path / "fp32"), dtype="float64")


def test_buffers_are_computed_not_left_empty(tmp_path):
    """Non-persistent buffers (rotary inv_freq, CLIP position ids) equal transformers' own."""
    hf, _ = _save_tiny_llava(tmp_path)
    ours = VLM.from_transformers(str(tmp_path))
    theirs = dict(hf.named_buffers())
    ref_inv = next(v for k, v in theirs.items() if k.endswith("rotary_emb.inv_freq"))
    got_inv = next(v for k, v in ours.named_buffers() if k.endswith("rotary_emb.inv_freq"))
    assert torch.equal(got_inv, ref_inv) and got_inv.dtype == torch.float32
    got_pos = next(v for k, v in ours.named_buffers() if k.endswith("position_ids"))
    assert torch.equal(got_pos, torch.arange(got_pos.shape[-1])[None])


def test_from_pretrained_keeps_its_behaviour_and_takes_dtype(tmp_path):
    model = tiny_vlm(encoder={"kind": "vit", "image_size": 8, "patch_size": 2, "width": 32, "depth": 2, "heads": 2,
                              "pos_embed": "sincos"},
                     llm={"config": {**TINY_LLAMA, "tie_word_embeddings": True}}).eval()
    model.save_pretrained(str(tmp_path / "m"))
    back = VLM.from_pretrained(str(tmp_path / "m")).eval()
    assert back.llm.lm_head.weight is back.llm.get_input_embeddings().weight  # the tie survives assign=True
    assert torch.equal(back.encoder.pos_embed, model.encoder.pos_embed)  # a fixed buffer, recomputed
    input_ids, mask, pixels = _inputs(model.tokenizer, model.visual_tokens)
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids, mask, pixels).logits, model(input_ids, mask, pixels).logits,
                                   atol=0, rtol=0)
    half = VLM.from_pretrained(str(tmp_path / "m"), dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16} and half.config.llm.dtype == "bfloat16"
    with torch.no_grad():
        assert half(input_ids, mask, pixels).logits.dtype == torch.bfloat16


def test_a_checkpoint_of_another_shape_is_refused(tmp_path):
    tiny_vlm().save_pretrained(str(tmp_path / "m"))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["model"]["llm"]["config"]["intermediate_size"] = 48
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"mlp.* has shape \(\d+, \d+\) but the model's is \(\d+, \d+\); is the"):
        VLM.from_pretrained(str(tmp_path / "m"))


def _processor(path, **fields):
    (path / "preprocessor_config.json").write_text(json.dumps(fields))


def test_preprocessor_normalisation_and_crop_are_read(tmp_path):
    _save_tiny_llava(tmp_path)
    _processor(tmp_path, image_processor_type="CLIPImageProcessor", do_center_crop=True, crop_size={"height": 8,
               "width": 8}, size={"shortest_edge": 8}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
               do_normalize=True, resample=3)
    model = VLM.from_transformers(str(tmp_path))
    assert model.encoder.image_mean == (0.5, 0.5, 0.5) and model.encoder.image_std == (0.5, 0.5, 0.5)
    assert model.config.encoder.image_mean == (0.5, 0.5, 0.5) and model.config.image.resize == "crop"
    model.save_pretrained(str(tmp_path / "saved"))
    again = VLM.from_pretrained(str(tmp_path / "saved"))
    assert again.encoder.image_mean == (0.5, 0.5, 0.5) and again.config.image.resize == "crop"


def test_a_fixed_square_processor_is_stretch_and_no_processor_keeps_the_defaults(tmp_path):
    _save_tiny_llava(tmp_path)
    assert VLM.from_transformers(str(tmp_path)).encoder.image_mean[0] == pytest.approx(0.48145466)
    _processor(tmp_path, size={"height": 8, "width": 8}, do_center_crop=False, image_mean=[0.5] * 3,
               image_std=[0.25] * 3)
    model = VLM.from_transformers(str(tmp_path))
    assert model.config.image.resize == "stretch" and model.encoder.image_std == (0.25, 0.25, 0.25)
    _processor(tmp_path, size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    with pytest.raises(ValueError, match="outputs 16 px images but the vision tower takes 8 px"):
        VLM.from_transformers(str(tmp_path))



def test_processor_config_json_is_read_before_preprocessor_config_json(tmp_path):
    """transformers 5 saves the image processor inside processor_config.json; it wins, as in AutoImageProcessor."""
    _save_tiny_llava(tmp_path)
    _processor(tmp_path, size={"height": 8, "width": 8}, image_mean=[0.5] * 3, image_std=[0.5] * 3)  # stretch
    nested = {"processor_class": "LlavaProcessor", "image_processor": {
        "do_center_crop": True, "crop_size": {"height": 8, "width": 8}, "size": {"shortest_edge": 12},
        "image_mean": [0.25] * 3, "image_std": [0.75] * 3, "resample": 1, "do_rescale": False}}
    (tmp_path / "processor_config.json").write_text(json.dumps(nested))
    model = VLM.from_transformers(str(tmp_path))
    assert model.encoder.image_mean == (0.25,) * 3 and model.encoder.image_std == (0.75,) * 3
    image = model.config.image
    assert (image.resize, image.resample, image.shortest_edge, image.rescale) == ("crop", "lanczos", 12, 1.0)


@pytest.mark.parametrize(("fields", "match"), [
    ({"do_resize": False, "size": {"height": 8, "width": 8}}, "do_resize is false, so its images keep their own"),
    ({"size": {"height": 8, "width": 8}, "resample": 9}, r"resample=9 is not a PIL filter \(0..5"),
])
def test_image_processors_vlfuse_cannot_follow_are_refused(tmp_path, fields, match):
    _save_tiny_llava(tmp_path)
    _processor(tmp_path, **fields)
    with pytest.raises(ValueError, match=match):
        VLM.from_transformers(str(tmp_path))


def test_a_llava_processor_that_expands_image_to_another_count_is_refused(tmp_path):
    """CLIP with ``default`` hands on 16 features; a processor without CLIP's extra token would expand to 15."""
    _save_tiny_llava(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps({
        "processor_class": "LlavaProcessor", "patch_size": 2, "num_additional_image_tokens": 0,
        "vision_feature_select_strategy": "default"}))
    with pytest.raises(ValueError, match=r"expand <image> to 15 tokens, but the clip_vision_model tower hands on 16"):
        VLM.from_transformers(str(tmp_path))
