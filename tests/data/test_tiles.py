"""The tiling transform (``vlfuse.data.tiles``) gives exactly what transformers' Mllama image processor gives, and the
``group`` cross-attention mask is exactly ``MllamaProcessor``'s."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil
from transformers.models.mllama.processing_mllama import (
    convert_sparse_cross_attention_mask_to_dense,
    get_cross_attention_token_mask,
)

from vlfuse.data.tiles import TileTransform, arrangements
from vlfuse.injection.xattn_media import MediaLayout, image_groups, media_masks

SIZES = [(20, 9), (7, 26), (9, 9), (8, 8), (30, 31), (3, 5), (64, 10), (17, 16), (16, 8)]  # (width, height)


def picture(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_arrangements_are_transformers_supported_aspect_ratios():
    from transformers.models.mllama.image_processing_pil_mllama import get_all_supported_aspect_ratios

    for n in (1, 2, 4, 6):
        assert arrangements(n) == list(get_all_supported_aspect_ratios(n))


@pytest.mark.parametrize("max_tiles", [1, 4, 6])
def test_tiles_equal_the_mllama_image_processor(max_tiles):
    ip = MllamaImageProcessorPil(size={"height": 8, "width": 8}, max_image_tiles=max_tiles)
    transform = TileTransform(8, max_tiles, ip.image_mean, ip.image_std, int(ip.resample))
    images = [[picture(w, h, i)] for i, (w, h) in enumerate(SIZES)]
    ref = ip(images=images, return_tensors="pt")
    for i, (group,) in enumerate(images):
        got = transform(group)
        assert got.pixel_values.shape == (max_tiles, 3, 8, 8)
        assert torch.equal(got.pixel_values, ref["pixel_values"][i, 0]), SIZES[i]  # bit for bit
        assert got.aspect_ratio_id == int(ref["aspect_ratio_ids"][i, 0])
        assert got.tiles == ref["num_tiles"][i][0]
    if max_tiles == 4:  # the sizes cover up- and downscaling, wide and tall canvases
        assert {transform(g[0]).tiles for g in images} == {1, 2, 3, 4}


def test_a_batch_has_transformers_padded_slot_layout():
    ip = MllamaImageProcessorPil(size={"height": 8, "width": 8}, max_image_tiles=4)
    transform = TileTransform(8, 4, ip.image_mean, ip.image_std)
    groups = [[picture(20, 9, 0)], [picture(7, 26, 1), picture(9, 9, 2)], []]
    got = transform.collate_images([[transform(im) for im in g] for g in groups])
    ref = ip(images=[g or [picture(8, 8, 3)] for g in groups], return_tensors="pt")  # transformers needs an image
    assert got["pixel_values"].shape == (3 * 2, 4, 3, 8, 8)
    assert torch.equal(got["pixel_values"][:4], ref["pixel_values"][:2].flatten(0, 1))
    assert torch.equal(got["aspect_ratio_ids"][:2], ref["aspect_ratio_ids"][:2])
    assert torch.equal(got["aspect_ratio_mask"][:2], ref["aspect_ratio_mask"][:2])
    assert got["aspect_ratio_ids"][2].tolist() == [0, 0] and got["aspect_ratio_mask"][2, :, 0].tolist() == [1, 1]
    assert not got["pixel_values"][4:].any()  # padded slots: zero tiles


def test_tensors_and_foreign_images_are_refused_with_the_fix():
    transform = TileTransform(8, 4, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(TypeError, match="PIL images"):
        transform(torch.zeros(3, 8, 8))
    with pytest.raises(TypeError, match="TiledImage"):
        transform.collate_images([[torch.zeros(3, 8, 8)]])
    with pytest.raises(ValueError, match="at least one tile"):
        TileTransform(8, 0, (0.5,) * 3, (0.5,) * 3)


@pytest.mark.parametrize("seed", range(6))
def test_group_mask_is_mllama_processors_cross_attention_mask(seed):
    """Random prompts of runs of adjacent markers: which images each token reads, against transformers."""
    g = torch.Generator().manual_seed(seed)
    markers = torch.rand(3, 14, generator=g) < 0.35  # (B, T)
    markers[:, 0] = False  # a token before any image in every row
    counts = markers.sum(dim=1)
    n_max = int(counts.max())
    slots = torch.arange(n_max) < counts[:, None]
    layout = MediaLayout(slots, slots, image_groups(markers, n_max), None, 1)
    mask, rows, ff_rows = media_masks(markers, torch.zeros(3, dtype=torch.long), layout, "group", "zero")
    ids = torch.where(markers, 7, 1)
    sparse = [get_cross_attention_token_mask(row.tolist(), 7) for row in ids]
    ref = convert_sparse_cross_attention_mask_to_dense(sparse, [[1] * int(c) for c in counts], 1, 14)[..., 0]
    ref = torch.from_numpy(ref).bool()  # (B, T, N_max)
    assert torch.equal(ff_rows[..., 0], ref.any(dim=-1))
    assert torch.equal(mask[:, 0] & rows, ref & ref.any(dim=-1, keepdim=True))
