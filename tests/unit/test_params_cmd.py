"""``vlfuse params``: exact counts for every registered connector and injection, built on the meta device."""

from __future__ import annotations

import argparse
import json

import pytest

from vlfuse.cli import params_cmd
from vlfuse.connectors.perceiver import PerceiverConfig, PerceiverResampler
from vlfuse.connectors.qformer import QFormer, QFormerConfig
from vlfuse.registry import CONNECTORS, INJECTIONS


def params(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vlfuse")
    params_cmd.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["params", *argv])


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_json(capsys, *argv: str) -> dict:
    assert params_cmd.run(params("--json", *argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_llava_sizes_at_1024_to_4096_and_every_design_listed(capsys):
    out = run_json(capsys)  # defaults: --vision-dim 1024 --llm-dim 4096 --latents 64 --patches 576
    assert set(out["connectors"]) == set(CONNECTORS.names()) and set(out["injections"]) == set(INJECTIONS.names())
    c = out["connectors"]
    assert c["linear"] == 1024 * 4096 + 4096 == 4_198_400
    assert c["mlp"] == (1024 * 4096 + 4096) + (4096 * 4096 + 4096) == 20_979_712
    assert c["avgpool"] == c["mlp"] and c["none"] == 0 and out["injections"]["concat"] == 0
    assert c["pixelshuffle"] == 1024 * 4 * 4096  # r = 2, one bias-free linear
    # perceiver (idefics, width Dv = 1024): 6 layers of 3 LayerNorms, q k v (8 heads of 64), o, ReLU MLP 4x;
    # 64 latents, 1 time embedding, final LayerNorm, Linear(1024, 4096)
    layer = 3 * 2 * 1024 + 3 * 1024 * 512 + 512 * 1024 + 2 * 1024 * 4096
    assert c["perceiver"] == 6 * layer + 64 * 1024 + 1024 + 2 * 1024 + (1024 * 4096 + 4096) == 67_218_432
    # qformer (BERT-base, no text path): 12 layers of self-attention (q k v o + LayerNorm) and query feed-forward
    # (768 -> 3072 -> 768 + LayerNorm), cross-attention in the 6 even layers (k, v read Dv = 1024); 32 queries,
    # embedding LayerNorm, Linear(768, 4096)
    attn, ff = 4 * (768 * 768 + 768) + 2 * 768, (768 * 3072 + 3072) + (3072 * 768 + 768) + 2 * 768
    cross = 2 * (768 * 768 + 768) + 2 * (1024 * 768 + 768) + 2 * 768
    assert c["qformer"] == 12 * (attn + ff) + 6 * cross + 32 * 768 + 2 * 768 + (768 * 4096 + 4096) == 104_773_120
    assert out["visual_tokens"] == {"avgpool": 4, "cabstractor": 9, "linear": 576, "mlp": 576, "none": 0,
                                    "perceiver": 64, "pixelshuffle": 144, "qformer": 32}


def test_flags_reach_the_connectors_that_have_them(capsys):
    out = run_json(capsys, "--vision-dim", "16", "--llm-dim", "24", "--latents", "4", "--ratio", "3", "--grid", "2",
                   "--patches", "36", "--queries", "5")
    assert out["visual_tokens"]["qformer"] == 5
    assert out["connectors"]["qformer"] == count(QFormer(QFormerConfig(num_queries=5), in_dim=16, out_dim=24))
    perceiver = PerceiverResampler(PerceiverConfig(n_latents=4), in_dim=16, out_dim=24)  # built for real, on CPU
    assert out["connectors"]["perceiver"] == sum(p.numel() for p in perceiver.parameters())
    assert out["connectors"]["pixelshuffle"] == 16 * 9 * 24
    assert out["visual_tokens"]["perceiver"] == 4 and out["visual_tokens"]["pixelshuffle"] == 4
    assert out["visual_tokens"]["avgpool"] == out["visual_tokens"]["cabstractor"] == 4
    # a ratio that does not divide the 5 x 5 grid: the count stands, V is unknown (null)
    out = run_json(capsys, "--patches", "25", "--ratio", "2")
    assert out["visual_tokens"]["pixelshuffle"] is None and out["connectors"]["linear"] == 4_198_400


def test_table_output_and_errors(capsys):
    assert params_cmd.run(params("--llm-layers", "2")) == 0
    text = capsys.readouterr().out
    assert "linear" in text and "4,198,400" in text and "20,979,712" in text and "concat" in text
    with pytest.raises(ValueError, match="--vision-dim=0 must be >= 1"):
        params_cmd.run(params("--vision-dim", "0"))
    with pytest.raises(ValueError, match="n_latents=0 must be >= 1"):
        params_cmd.run(params("--latents", "0"))
