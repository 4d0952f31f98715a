"""Generation with cross-attention: visual K/V projected once per sequence, cached beside the LLM's KV cache.

Shapes: ``B`` batch, ``G`` generated tokens, ``M`` media tokens per sample, ``hk`` key/value heads, ``hd`` head dim.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_vlm
from tests.unit.test_generate import greedy_without_cache
from vlfuse.compare.measure import cache_bytes, cache_split
from vlfuse.generate import generate_ids
from vlfuse.injection.xattn_media import CrossAttentionCache

PROMPTS = ["<image> what color is the circle ?", "<image> left of <image> ?"]


@pytest.fixture(scope="module", params=["last", "all"])
def model(request):
    """Large random weights in the LLM and the blocks, open gates: greedy decoding wanders and images matter."""
    torch.manual_seed(0)
    vlm = tiny_vlm(injection={"kind": "cross_attention", "every": 1, "media": request.param}).eval()
    with torch.no_grad():
        for p in [*vlm.llm.parameters(), *vlm.injector.parameters()]:
            if p.ndim == 2:
                p.normal_(0.0, 0.3)
        for block in vlm.injector.blocks:
            block.attn_gate.fill_(1.0)
            block.ff_gate.fill_(1.0)
    return vlm


def prompt_batch(model):
    proc = model.processor()
    g = torch.Generator().manual_seed(1)
    examples = [proc.encode_prompt(t, [torch.rand(3, 8, 8, generator=g) for _ in range(t.count("<image>"))])
                for t in PROMPTS]
    return proc.collate(examples, padding_side="left")


def test_visual_kv_projected_once_per_block_over_32_greedy_tokens(model):
    calls = {"k": 0, "v": 0}
    hooks = [b.attn.k_proj.register_forward_hook(lambda *a: calls.__setitem__("k", calls["k"] + 1))
             for b in model.injector.blocks]
    hooks += [b.attn.v_proj.register_forward_hook(lambda *a: calls.__setitem__("v", calls["v"] + 1))
              for b in model.injector.blocks]
    try:
        ids = generate_ids(model, prompt_batch(model), max_new_tokens=32, eos_token_id=-1)  # all 32 steps run
    finally:
        for h in hooks:
            h.remove()
    assert ids.shape == (2, 32)
    assert len(model.injector.blocks) == 2 and calls == {"k": 2, "v": 2}


def test_cached_generation_equals_full_forward_argmax(model):
    batch = prompt_batch(model)
    cached = generate_ids(model, batch, max_new_tokens=12, eos_token_id=-1)
    assert torch.equal(cached, greedy_without_cache(model, batch, 12))
    assert len(set(cached[0].tolist())) > 2  # greedy really wandered


def test_cache_holds_visual_kv_that_do_not_grow_while_decoding(model):
    batch = prompt_batch(model)
    mask = batch["attention_mask"]
    with torch.no_grad():
        out = model(batch["input_ids"], attention_mask=mask, pixel_values=batch["pixel_values"],
                    image_counts=batch["image_counts"], use_cache=True)
        past = out.past_key_values
        assert isinstance(past, CrossAttentionCache)
        b, v = mask.shape[0], model.visual_tokens
        hk, hd = model.injector.blocks[0].attn.kv_heads, model.injector.blocks[0].attn.head_dim
        # "all": two image slots (the first sample's second is padding); "last": only the last image is kept
        n_kept = 2 if model.injector.config.media == "all" else 1
        assert past.keys[0].shape == (b, hk, n_kept * v, hd)
        first = cache_split(past)
        assert first["visual"] == 2 * 2 * b * hk * n_kept * v * hd * 4  # blocks x (K, V) x fp32
        assert cache_bytes(past) == first["self_attn"] + first["visual"]
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        step = model(token, attention_mask=torch.cat([mask, mask.new_ones(b, 1)], 1),
                     position_ids=mask.sum(-1, keepdim=True), past_key_values=past, use_cache=True)
        after = cache_split(step.past_key_values)
    assert after["visual"] == first["visual"] and after["self_attn"] > first["self_attn"]
    assert step.past_key_values.keys[0] is past.keys[0]  # reused, not recomputed
