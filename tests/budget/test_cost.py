"""``vlfuse cost``: FLOPs and bytes of a tiny config counted by hand, presets against published sizes, the CLI."""

from __future__ import annotations

import json

import pytest

from tests.budget.test_tokens import cli
from vlfuse.budget.cost import Workload, estimate_cost, layer_weights, vision_flops
from vlfuse.budget.dims import LLM_PRESETS, FusionDims, LLMDims, VisionDims, parse_dims

# L=2 layers, d=4, h=2 heads of hd=2 (a = 4), g=1 KV head (kv = 2), SwiGLU f=8, vocab 10
TINY = LLMDims(layers=2, hidden=4, heads=2, kv_heads=1, ffn=8, vocab=10)
# ViT: 1 layer, Dv=6, 4x4 px image in 2 px patches -> P = 4 patches + 1 CLS
TINY_VIT = VisionDims(layers=1, hidden=6, heads=1, ffn=12, patch=2, image=4)
ONE = Workload(images=1, text_tokens=3, new_tokens=2, dtype="bf16")


def test_tiny_concat_by_hand():
    (c,) = estimate_cost(["concat"], TINY, TINY_VIT, FusionDims(), ONE)
    # one layer's weights: q 4x4 + k 4x2 + v 4x2 + o 4x4 + gate/up/down 3 x 4x8 = 16 + 8 + 8 + 16 + 96 = 144
    assert layer_weights(TINY) == 144
    # projector 6->4->4: 24 + 16 = 40 weights, applied to P = 4 patches: 2 * 40 * 4 = 320 FLOPs
    assert c.params_added == 40
    # S = 3 text + 4 visual = 7. matmuls: 2 FLOPs * 144 weights * 7 tokens * 2 layers = 4032
    # causal attention: token i attends i keys, 4 * a = 16 FLOPs per key: 16 * (1+...+7) = 448 per layer -> 896
    # LM head on the last position: 2 * 4 * 10 = 80
    assert c.llm_tokens == 7
    assert c.prefill_flops == 4032 + 896 + 80 + 320
    # decode token 1 sees 7 cached keys + itself: 2*144*2 + 16*8*2 + 80 = 576 + 256 + 80 = 912; token 2: 576 + 288 + 80
    assert (c.decode_flops_first, c.decode_flops_last, c.decode_flops_total) == (912, 944, 912 + 944)
    # K and V, 2 layers, 1 KV head of 2, 7 + 2 tokens, 2 bytes: 2 * 2 * 2 * 9 * 2 = 144
    assert c.kv_cache_bytes == 144


def test_tiny_xattn_by_hand():
    (c,) = estimate_cost(["xattn"], TINY, TINY_VIT, FusionDims(xattn_every=2), ONE)
    # one block (2 layers / every 2): q 16 + o 16 + SwiGLU 96 (text side, 128) + k 8 + v 8 (visual side, 16)
    # plus the 6->4 projection: 24 + 144 = 168 weights
    assert c.params_added == 168
    # LLM on the 3 text tokens: 2*144*3*2 = 1728 + attention 16*(1+2+3)*2 = 192 + head 80 = 2000
    # projection of 4 visual tokens 2*24*4 = 192; block: k, v on 4 visual 2*16*4 = 128,
    # q, o, FFN on 3 text 2*128*3 = 768, every text token over every visual token 16*3*4 = 192
    assert c.llm_tokens == 3
    assert c.prefill_flops == 2000 + 192 + 128 + 768 + 192
    # decode token 1: LLM 576 + 16*4*2 + 80 = 784; block 2*128 + 16*4 = 320
    assert c.decode_flops_first == 784 + 320
    # text K/V 2*2*2*(3+2)*2 = 80 bytes + visual K/V of the block 2*1*2*4*2 = 32 bytes
    assert c.kv_cache_bytes == 80 + 32


def test_tiny_vision_encoder_by_hand():
    # patch embedding 2 * (3*2*2) * 6 * 4 patches = 576; block over n = 5 tokens:
    # 2 * (4*36 + 2*6*12) * 5 = 2880 weights-FLOPs + 4 * 6 * 25 = 600 attention -> 576 + 3480 per image
    assert vision_flops(TINY_VIT, 2) == 2 * (576 + 2880 + 600)


@pytest.mark.parametrize(("name", "published"), [("llama-3-8b", 8.03e9), ("qwen2-7b", 7.62e9),
                                                 ("vicuna-7b", 6.74e9), ("llama-3.2-1b", 1.24e9)])
def test_llm_presets_match_published_parameter_counts(name, published):
    m = LLM_PRESETS[name]
    embeddings = m.vocab * m.hidden * (1 if name == "llama-3.2-1b" else 2)  # 3.2-1B ties input and output
    assert m.layers * layer_weights(m) + embeddings == pytest.approx(published, rel=0.01)


def test_concat_attention_grows_quadratically_xattn_linearly():
    m, v, f = LLM_PRESETS["llama-3-8b"], VisionDims(24, 1024, 16, 4096, 14, 336), FusionDims()
    attn = {}
    for design in ("concat", "xattn"):
        p = [estimate_cost([design], m, v, f, Workload(n, 100, 1)) for n in (2, 4, 8)]
        d1, d2 = (p[1][0].prefill_flops - p[0][0].prefill_flops), (p[2][0].prefill_flops - p[1][0].prefill_flops)
        attn[design] = d2 / (2 * d1)  # 1 for linear growth, > 1 for quadratic
    assert attn["concat"] > 1.01 and attn["xattn"] == pytest.approx(1.0)


def test_late_fusion_costs_a_text_only_llm():
    m, v = LLM_PRESETS["llama-3.2-1b"], VisionDims(24, 1024, 16, 4096, 14, 336)
    (late,) = estimate_cost(["late"], m, v, FusionDims(), Workload(4, 50, 10))
    (text,) = estimate_cost(["concat"], m, v, FusionDims(), Workload(0, 50, 10))
    assert late.llm_tokens == text.llm_tokens == 50 and late.kv_cache_bytes == text.kv_cache_bytes


def test_cli_json_and_plot(tmp_path, capsys):
    argv = ["cost", "--llm", "llama-3.2-1b", "--images", "3", "--text-tokens", "64", "--new-tokens", "16", "--json",
            "--plot", str(tmp_path / "cost.png")]
    assert cli(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["designs"]) == {"concat", "xattn", "qformer", "perceiver", "late"}
    assert out["designs"]["concat"]["llm_tokens"] == 64 + 3 * 576
    assert (tmp_path / "cost.png").stat().st_size > 10_000
    assert cli(["cost", "--llm-dims", "layers=2,hidden=4,heads=2,kv_heads=1,ffn=8,vocab=10", "--vision-dims",
                "layers=1,hidden=6,heads=1,ffn=12,patch=2,image=4", "--design", "concat", "--images", "1",
                "--text-tokens", "3", "--new-tokens", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["designs"]["concat"]["prefill_flops"] == 5328
    assert cli(["cost", "--design", "concat,late"]) == 0
    assert "concat" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "match"), [
    (["--design", "gated"], "unknown design gated; choices are: concat"),
    (["--llm", "gpt-5"], "unknown preset 'gpt-5'; presets are: llama-3-8b"),
    (["--llm", "qwen2-7b", "--llm-dims", "layers=2"], "either a preset or --llm-dims"),
    (["--llm-dims", "layers=2,hidden=4"], "missing heads, ffn, vocab"),
    (["--llm-dims", "layers=2,width=4"], "KEY one of layers, hidden"),
    (["--images", "-1"], "must all be >= 0"),
    (["--llm", "llama-3.2-1b", "--xattn-every", "40"], "exceeds the LLM's 16 layers"),
])
def test_cost_errors(argv, match):
    with pytest.raises(ValueError, match=match):
        cli(["cost", *argv])


def test_parse_dims_defaults():
    m = parse_dims("layers=2,hidden=8,heads=2,ffn=16,vocab=5", LLMDims, "--llm-dims")
    assert (m.g, m.hd) == (2, 4)
