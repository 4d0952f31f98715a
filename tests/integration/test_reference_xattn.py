"""The transformers reference benchmark (``bench/reference_xattn.py``) times equal work on both sides.

Same weights (a tiny random HF Mllama / IDEFICS, saved and loaded with ``VLM.from_transformers``), same prompt:
``transformers``' own ``generate`` and vlfuse's ``generate_ids`` give identical greedy tokens, so the decode
ms/token it compares are of the same computation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import reference_xattn  # bench/ holds scripts, not a package: imported through sys.path
from reference_models import (
    FAMILIES,
    PRESETS,
    Size,
    build_hf,
    convert,
    hf_inputs,
    open_gates,
    pixels,
    prompt_ids,
    vlfuse_batch,
)

from tests.parity.test_perceiver_parity import randomize


@pytest.mark.parametrize("family", FAMILIES)
def test_vlfuse_and_transformers_generate_the_same_greedy_tokens(tmp_path, family):
    hf, tok = build_hf(family, PRESETS["tiny"])
    open_gates(randomize(hf))  # weights everywhere far from HF's small init, so the images move the tokens
    hf, ours = convert(hf, tok, tmp_path, torch.float32, "cpu")
    image_id = ours.injector.image_token_id
    for n in (1, 3):
        ids, images = prompt_ids(tok, n), pixels(ours, n, "cpu", torch.float32)
        ref = reference_xattn.hf_generate(hf, hf_inputs(family, tok, ids, images), image_id, 24)  # (1, 24)
        got = reference_xattn.ours_generate(ours, vlfuse_batch(ids, images), 24)  # (1, 24)
        assert ref.shape == got.shape == (1, 24)
        assert torch.equal(got, ref), (got.tolist(), ref.tolist())
        assert len(set(ref[0].tolist())) > 3 and image_id not in ref[0].tolist()
        other = images.clone()
        other[-1] = torch.randn(other[-1].shape, generator=torch.Generator().manual_seed(99))
        moved = reference_xattn.hf_generate(hf, hf_inputs(family, tok, ids, other), image_id, 24)
        assert not torch.equal(moved, ref)  # the last image (which the generated tokens read) matters


def test_the_benchmark_prints_one_row_per_family_and_image_count(tmp_path, capsys):
    out = tmp_path / "table.md"
    assert reference_xattn.main(["--images", "1,2", "--new-tokens", "3", "--repeats", "1", "--out", str(out)]) == 0
    report = out.read_text()
    assert report.strip() == capsys.readouterr().out.strip()
    rows = [line for line in report.splitlines() if line.startswith("| Mllama") or line.startswith("| IDEFICS")]
    assert len(rows) == 4 and all(row.endswith("| 3/3 |") for row in rows)
    assert "decode ms/token HF" in report and "Build + save + convert" in report


def test_bad_sizes_and_families_are_named():
    with pytest.raises(ValueError, match="multiple of cross_every"):
        Size(hidden=32, layers=5, heads=4, kv_heads=2, intermediate=64, vocab=64, cross_every=2, vision="tiny")
    with pytest.raises(ValueError, match="choose one of mllama, idefics"):
        build_hf("llava", PRESETS["tiny"])
    with pytest.raises(ValueError, match="must be >= 2"):
        reference_xattn.decode_pair({}, 1, 1, "cpu")
