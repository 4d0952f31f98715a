"""Cross-attention injection: a fresh model is its LLM, masks by perturbation, keys kept, errors, any LLM family.

Shapes: ``B`` batch, ``T`` text length, ``Dt`` LLM width, ``W`` vocabulary size.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_LLAMA, tiny_vlm
from vlfuse.injection.cross_attention import FusedDecoderLayer

GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256}
LLMS = {"llama": dict(TINY_LLAMA), "qwen2": dict(TINY_LLAMA, model_type="qwen2"),
        "mistral": dict(TINY_LLAMA, model_type="mistral"), "gpt2": GPT2}
FLAMINGO = {"kind": "cross_attention", "every": 1}
MLLAMA = {"kind": "cross_attention", "layers": [1], "qk_norm": True, "norm": "rmsnorm", "ff": "swiglu",
          "kv_heads": 1, "ff_text_rows": False}


def xattn_vlm(llm: str = "llama", **injection):
    return tiny_vlm(injection={**FLAMINGO, **injection}, llm={"config": LLMS[llm]}).eval()


def open_gates(model, value: float = 0.8) -> None:
    """Non-zero gates (and per-channel noise) so every block acts."""
    with torch.no_grad():
        for block in model.injector.blocks:
            block.attn_gate.fill_(value)
            block.ff_gate.fill_(value)


def batch_of(model, prompts, seed: int = 0):
    proc = model.processor()
    g = torch.Generator().manual_seed(seed)
    examples = [proc.encode_prompt(text, [torch.rand(3, 8, 8, generator=g) for _ in range(text.count("<image>"))])
                for text in prompts]
    return examples, proc.collate(examples, padding_side="left")


def logits(model, batch, pixels=None):
    with torch.no_grad():
        return model(batch["input_ids"], attention_mask=batch["attention_mask"],
                     pixel_values=batch.get("pixel_values") if pixels is None else pixels,
                     image_counts=batch["image_counts"]).logits


@pytest.mark.parametrize("llm", list(LLMS))
@pytest.mark.parametrize("every", [1, 2])
def test_fresh_model_logits_equal_the_llm_exactly(llm, every):
    model = xattn_vlm(llm, every=every)
    _, batch = batch_of(model, ["<image> what color <image> is the circle ?", "the <image> red ?"])
    mask = batch["attention_mask"]
    with torch.no_grad():  # the LLM alone, with the positions the VLM gives a left-padded batch
        ref = model.llm(input_ids=batch["input_ids"], attention_mask=mask,
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    got = logits(model, batch)
    assert torch.equal(got, ref)
    open_gates(model)  # and the blocks really run once their gates open
    assert not torch.allclose(logits(model, batch), ref)


def test_gate_init_starts_every_gate_open_and_survives_save_and_load(tmp_path):
    from vlfuse.model import VLM

    model = xattn_vlm(gate_init=0.5, every=2)
    gates = [g for b in model.injector.blocks for g in (b.attn_gate, b.ff_gate)]
    assert len(gates) == 2 * len(model.injector.blocks) > 0 and all(torch.equal(g, torch.full_like(g, 0.5))
                                                                    for g in gates)
    _, batch = batch_of(model, ["<image> what color is the circle ?"])
    model.save_pretrained(str(tmp_path / "m"))
    back = VLM.from_pretrained(str(tmp_path / "m")).eval()
    assert torch.equal(logits(back, batch), logits(model, batch))
    closed = xattn_vlm(every=2)
    closed.load_state_dict(model.state_dict())
    assert torch.equal(logits(closed, batch), logits(model, batch))  # the start is only an init: weights rule


def test_layers_are_wrapped_with_their_state_dict_keys_kept():
    plain = tiny_vlm()
    model = xattn_vlm(every=2)
    layers = model.llm.model.layers
    assert isinstance(layers[0], FusedDecoderLayer) and not isinstance(layers[1], FusedDecoderLayer)
    assert list(model.llm.state_dict()) == list(plain.llm.state_dict())
    assert layers[0].self_attn is layers[0].layer.self_attn  # attribute reads reach the wrapped layer
    assert {k.split(".")[0] for k in model.state_dict()} == {"encoder", "connector", "injector", "llm"}
    # the LLM's own weights load back into the wrapped layers
    model.llm.load_state_dict(plain.llm.state_dict())
    assert torch.equal(layers[0].layer.mlp.up_proj.weight, plain.llm.model.layers[0].mlp.up_proj.weight)


def test_an_image_is_one_marker_token():
    model = xattn_vlm()
    assert model.injector.placeholder_tokens(model.visual_tokens) == 1
    examples, _ = batch_of(model, ["<image> <image> what ?"])
    image_id = model.injector.image_token_id
    assert examples[0].input_ids.count(image_id) == 2


def test_deep_copy_and_lora_keep_the_model(tmp_path):
    import copy

    from vlfuse.train.policy import LoraSettings, apply_policy, merge_lora

    model = xattn_vlm()
    open_gates(model)
    _, batch = batch_of(model, ["<image> what color is the circle ?"])
    assert torch.equal(logits(copy.deepcopy(model), batch), logits(model, batch))
    apply_policy(model, {"llm": "lora"}, LoraSettings(r=2))  # peft finds the projections inside wrapped layers
    assert any("lora_A" in n for n, _ in model.llm.named_parameters())
    model.save_pretrained(str(tmp_path / "m"))  # merges a copy first
    merged = logits(merge_lora(model), batch)
    assert torch.equal(logits(type(model).from_pretrained(str(tmp_path / "m")).eval(), batch), merged)


def test_save_and_load_keep_the_blocks(tmp_path):
    model = xattn_vlm(every=2)
    open_gates(model)
    _, batch = batch_of(model, ["<image> what color is the circle ?"])
    model.save_pretrained(str(tmp_path / "m"))
    loaded = type(model).from_pretrained(str(tmp_path / "m")).eval()
    assert torch.equal(logits(loaded, batch), logits(model, batch))


# --- masks, by perturbation of one image at a time ------------------------------------------------------------------
def first_block_output(model, batch, pixels):
    """The first block's output (before layer 0) is position-wise: a row depends only on the images it reads."""
    seen = []
    handle = model.injector.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o))
    logits(model, batch, pixels)
    handle.remove()
    return seen[0]  # (B, T, Dt)


@pytest.mark.parametrize("style", ["flamingo", "mllama"])
@pytest.mark.parametrize("media", ["last", "all"])
def test_each_token_reads_only_the_images_its_mode_allows(style, media):
    model = xattn_vlm(**{**(MLLAMA if style == "mllama" else {}), "media": media, "layers": [0]})
    open_gates(model)
    examples, batch = batch_of(model, ["what <image> color is <image> the circle ?"])
    ids = torch.tensor(examples[0].input_ids)
    first, second = (ids == model.injector.image_token_id).nonzero().flatten().tolist()
    pixels = batch["pixel_values"]
    base = first_block_output(model, batch, pixels)[0]
    moved = [first_block_output(model, batch, pixels + torch.eye(2)[i][:, None, None, None])[0] for i in range(2)]
    before, between, after = slice(0, first), slice(first, second), slice(second, len(ids))
    changed = [(m - base).abs().amax(-1) > 1e-6 for m in moved]  # (T,) per perturbed image
    assert not changed[0][before].any() and not changed[1][before].any()  # no image yet: nothing read
    assert changed[0][between].all() and not changed[1][between].any()  # the image marker reads its own image
    assert changed[1][after].all()
    assert bool(changed[0][after].all()) == (media == "all")  # "last": the newer image replaces the older


def test_tokens_before_any_image_get_zero_cross_attention_output():
    model = xattn_vlm(layers=[0])
    with torch.no_grad():
        model.injector.blocks[0].attn_gate.fill_(1.0)  # FFW gate stays 0: the block's change is attention alone
    examples, batch = batch_of(model, ["what color <image> is it ?"])
    first = examples[0].input_ids.index(model.injector.image_token_id)
    embeds = model.llm.get_input_embeddings()(batch["input_ids"])
    out = first_block_output(model, batch, batch["pixel_values"])
    assert torch.equal(out[0, :first], embeds[0, :first])
    assert not torch.allclose(out[0, first:], embeds[0, first:])


def test_whole_model_logits_before_an_image_ignore_it():
    model = xattn_vlm()
    open_gates(model)
    examples, batch = batch_of(model, ["what <image> color is <image> the circle ?"])
    second = [i for i, t in enumerate(examples[0].input_ids) if t == model.injector.image_token_id][1]
    pixels = batch["pixel_values"].clone()
    base = logits(model, batch, pixels)
    pixels[1] = torch.rand(3, 8, 8)
    moved = logits(model, batch, pixels)
    torch.testing.assert_close(moved[:, :second], base[:, :second], atol=0, rtol=0)
    assert not torch.allclose(moved[:, second:], base[:, second:])


def test_batch_with_different_image_counts_equals_each_sample_alone():
    model = xattn_vlm(media="all")
    open_gates(model)
    prompts = ["<image> what <image> color is <image> it ?", "the <image> circle ?", "what color ?"]
    examples, batch = batch_of(model, prompts)
    together = logits(model, batch)
    pixels = batch["pixel_values"].split([len(e.images) for e in examples])
    for b, e in enumerate(examples):
        alone = {"input_ids": torch.tensor([e.input_ids]), "attention_mask": torch.ones(1, len(e.input_ids)),
                 "image_counts": torch.tensor([len(e.images)])}
        if e.images:
            alone["pixel_values"] = pixels[b]
        n = len(e.input_ids)
        torch.testing.assert_close(together[b, -n:], logits(model, alone)[0], atol=1e-5, rtol=1e-5)


# --- errors ---------------------------------------------------------------------------------------------------------
def test_clear_errors():
    model = xattn_vlm()
    _, batch = batch_of(model, ["<image> what <image> ?"])
    with pytest.raises(ValueError, match=r"2 <image> marker\(s\) but 1 image"):
        model(batch["input_ids"], pixel_values=batch["pixel_values"][:1])
    with pytest.raises(ValueError, match=r"sample 0 has 2 <image> marker\(s\) but 3 image"):
        model(batch["input_ids"], pixel_values=batch["pixel_values"], image_counts=torch.tensor([3]))
    out = model(batch["input_ids"], pixel_values=batch["pixel_values"], use_cache=True)
    with pytest.raises(ValueError, match="images after the prefill"):
        model(batch["input_ids"][:, :1], pixel_values=batch["pixel_values"][:1], past_key_values=out.past_key_values)
    with pytest.raises(ValueError, match="already has a cross-attention block"):
        type(model.injector)(model.injector.config, model.llm)
    with pytest.raises(ValueError, match="layer 5 but the LLM has 2 decoder layers"):
        xattn_vlm(layers=[5])
    with pytest.raises(ValueError, match="every=0 must be >= 1"):
        xattn_vlm(every=0)


def test_params_counts_the_cross_attention_blocks(capsys):
    import json

    from vlfuse.cli.app import main

    assert main(["params", "--llm-dim", "64", "--llm-layers", "6", "--every", "2", "--json"]) == 0
    d = 64  # blocks before layers 0, 2, 4: q k v o (4 d^2), GELU FFW (8 d^2), two LayerNorms (4 d), two gates
    assert json.loads(capsys.readouterr().out)["injections"]["cross_attention"] == 3 * (12 * d * d + 4 * d + 2)
