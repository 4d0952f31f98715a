"""``vlfuse compare`` trains and measures the cross-attention designs (``flamingo``, ``xattn``) on a tiny grid."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_compare import TINY
from vlfuse.cli.app import main
from vlfuse.compare.designs import base_mapping, design_run, load_design


def test_designs_build_cross_attention_and_train_the_random_llm():
    for name, connector in (("flamingo", "perceiver"), ("xattn", "linear")):
        run = design_run(load_design(name), base_mapping(quick=True), seed=0)
        assert run.model.injection.kind == "cross_attention" and run.model.connector.kind == connector
        for stage in run.stages:
            # the compare bases start the LLM from random weights, so these rows train it like every other row
            assert stage.policy.get("llm", "train") == "train" and stage.policy.get("injector", "train") == "train"


@pytest.mark.slow
def test_flamingo_and_xattn_train_and_measure_through_compare(tmp_path):
    out = tmp_path / "grid"
    args = ["compare", "--quick", "--designs", "flamingo,xattn,llava-linear", "--jobs", "2", "--seeds", "1",
            "--out", str(out)] + [a for s in TINY for a in ("--set", s)]
    assert main(args) == 0
    designs = json.loads((out / "results.json").read_text())["designs"]
    for name in ("flamingo", "xattn"):
        d = designs[name]
        cell = d["seeds"]["0"]
        assert d["visual_tokens"] == 1  # one <image> marker per image, whatever V is
        assert cell["train_samples"] == 2 * 3 * 4 and cell["decode_ms_per_token_8img"] > 0
        assert 0 < d["params_trained"] == d["params_total"]  # everything trains on the random-LLM base
        # the LLM's own KV barely grows with images (7 more markers); media "last" keeps one image's visual K/V
        assert cell["kv_visual_bytes_8img"] == cell["kv_visual_bytes_1img"] > 0
        self_1 = cell["kv_bytes_1img"] - cell["kv_visual_bytes_1img"]
        self_8 = cell["kv_bytes_8img"] - cell["kv_visual_bytes_8img"]
        assert self_8 < 2 * self_1
    # 4 latents instead of 9 patches: flamingo caches fewer visual K/V than xattn
    assert designs["flamingo"]["seeds"]["0"]["kv_visual_bytes_1img"] < designs["xattn"]["seeds"]["0"][
        "kv_visual_bytes_1img"]
    # concat puts the 9 patches of each image in the sequence: 7 more images add 7 x 9 tokens of K/V (2 x 1 layer
    # x 2 heads x 16 dims x 4 bytes each), far more than the 7 markers cross-attention adds
    linear = designs["llava-linear"]
    assert linear["kv_bytes_8img"]["mean"] - linear["kv_bytes_1img"]["mean"] == 7 * 9 * (2 * 1 * 2 * 16 * 4)
