"""Tiling image transform of Llama 3.2 Vision: an image of any aspect ratio as up to ``max_tiles`` square tiles.

As ``transformers`` ``MllamaImageProcessor`` (its PIL backend) does it: pick the tiled canvas of at most
``max_tiles`` tiles that needs the smallest upscale (else the largest downscale; ties: the least area), resize the
image into it keeping its aspect ratio (PIL, ``resample``), pad right and bottom with black, scale to [0, 1],
normalise, and cut the canvas into tiles in row-major order. ``aspect_ratio_id`` is ``1 +`` the index of the
``(rows, cols)`` arrangement among all arrangements of at most ``max_tiles`` tiles (0 is a padded image slot).
A batch (``TileTransform.collate_images``) has transformers' padded slot layout: every sample gets the batch's most
images, a padded slot is zero tiles with id 0 and its first tile marked, as the transformers processor pads.
Canvas rules: ``vlfuse.budget.families.tiled`` (``mllama_canvas``, ``mllama_fit``).
Shapes: ``B`` batch, ``N_max`` most images of one sample, ``T`` tiles (``max_tiles``), ``C`` channels, ``H W``
the tile's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlfuse.budget.families.tiled import mllama_canvas, mllama_fit
from vlfuse.data.transforms import to_rgb


def arrangements(max_tiles: int) -> list[tuple[int, int]]:
    """Every ``(rows, cols)`` of at most ``max_tiles`` tiles, in transformers' order (the aspect-ratio ids)."""
    return [(a, b) for a in range(1, max_tiles + 1) for b in range(1, max_tiles + 1) if a * b <= max_tiles]


@dataclass
class TiledImage:
    """One image as tiles: ``pixel_values (T, C, H, W)`` (unused tiles zero), its arrangement's id, ``tiles``."""

    pixel_values: torch.Tensor
    aspect_ratio_id: int
    tiles: int


class TileTransform:
    """A PIL image (or path) -> ``TiledImage`` of ``max_tiles`` tiles of ``tile x tile`` pixels.

    Args:
        tile: a tile's side (the vision tower's ``image_size``).
        max_tiles: tiles per image at most (``max_image_tiles``).
        mean, std: per-channel normalisation; ``resample``: PIL's filter (2: bilinear, transformers' default).

    Example:
        >>> t = TileTransform(8, 4, (0.5,) * 3, (0.5,) * 3)
        >>> x = t(Image.new("RGB", (20, 9)))  # wide: one row of three tiles
        >>> x.pixel_values.shape, x.tiles, x.aspect_ratio_id
        (torch.Size([4, 3, 8, 8]), 3, 3)
    """

    def __init__(self, tile: int, max_tiles: int, mean: Sequence[float], std: Sequence[float],
                 resample: int = 2, rescale: float = 1 / 255) -> None:
        if max_tiles < 1:
            raise ValueError(f"max_tiles={max_tiles}: an image needs at least one tile")
        self.tile, self.max_tiles, self.resample, self.rescale = tile, max_tiles, resample, rescale
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]
        self.ids = {g: i + 1 for i, g in enumerate(arrangements(max_tiles))}

    def __call__(self, image: Any) -> TiledImage:
        """A PIL image or a path -> ``TiledImage``."""
        if isinstance(image, torch.Tensor):
            raise TypeError("the tiling transform takes PIL images (or paths), as transformers' Mllama processor "
                            "does; convert the tensor with torchvision's to_pil_image or PIL.Image.fromarray")
        if not isinstance(image, Image.Image):
            from vlfuse.data.llava_format import load_image

            image = load_image(image)
        image = to_rgb(image)
        w, h = image.size
        rows, cols = mllama_canvas(h, w, self.max_tiles, self.tile)
        new_h, new_w = mllama_fit(h, w, rows * self.tile, cols * self.tile, self.tile)
        image = image.resize((new_w, new_h), resample=self.resample)
        canvas = np.zeros((3, rows * self.tile, cols * self.tile), dtype=np.uint8)  # black right / bottom padding
        canvas[:, :new_h, :new_w] = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
        x = (canvas.astype(np.float64) * self.rescale).astype(np.float32)  # as transformers: float64, then float32
        x = (x - self.mean) / self.std  # (C, rows * tile, cols * tile)
        t = self.tile
        tiles = x.reshape(3, rows, t, cols, t).transpose(1, 3, 0, 2, 4).reshape(rows * cols, 3, t, t)  # row-major
        out = torch.zeros(self.max_tiles, 3, t, t)  # (T, C, H, W)
        out[: rows * cols] = torch.from_numpy(np.ascontiguousarray(tiles))
        return TiledImage(out, self.ids[(rows, cols)], rows * cols)

    def collate_images(self, groups: Sequence[Sequence[TiledImage]]) -> dict[str, torch.Tensor]:
        """Each sample's images -> ``pixel_values (B * N_max, T, C, H, W)``, ``aspect_ratio_ids (B, N_max)``,
        ``aspect_ratio_mask (B, N_max, T)``, padded slots included (transformers' layout, flattened over slots)."""
        b, n_max = len(groups), max(len(g) for g in groups)
        pixels = torch.zeros(b, n_max, self.max_tiles, 3, self.tile, self.tile)
        ids = torch.zeros(b, n_max, dtype=torch.long)
        mask = torch.zeros(b, n_max, self.max_tiles, dtype=torch.long)
        mask[:, :, 0] = 1  # a padded slot keeps its first tile, as transformers' build_aspect_ratio_mask
        for i, group in enumerate(groups):
            for j, im in enumerate(group):
                if not isinstance(im, TiledImage):
                    raise TypeError(f"sample {i} image {j} is a {type(im).__name__}, not a TiledImage; build every "
                                    "image of the batch with this TileTransform")
                pixels[i, j], ids[i, j] = im.pixel_values, im.aspect_ratio_id
                mask[i, j, : im.tiles] = 1
        return {"pixel_values": pixels.flatten(0, 1), "aspect_ratio_ids": ids, "aspect_ratio_mask": mask}
