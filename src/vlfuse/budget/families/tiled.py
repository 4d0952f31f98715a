"""Tile-grid families: InternVL's dynamic tiling into the context, Llama 3.2 Vision's tiles behind cross-attention.

InternVL 1.5+ (Chen et al., 2024, arXiv:2404.16821): choose the ``cols x rows`` grid (``min_patches`` to
``max_patches`` tiles) whose aspect ratio is closest to the image's, resize to it, cut 448 px tiles, add a
thumbnail when there is more than one tile; each view is 256 tokens after pixel shuffle, and the whole image is
wrapped in ``<img>`` ... ``</img>``. Reference: transformers ``GotOcr2ImageProcessor.crop_image_to_patches`` and
``InternVLProcessor.replace_image_token``.
Llama 3.2 Vision (Meta, 2024; transformers ``Mllama``): the image is fitted to the best canvas of at most
``max_image_tiles`` 560 px tiles and only one ``<|image|>`` token enters the text; the LLM reads the tiles through
cross-attention layers, ``(560 / 14)^2 + 1 = 1601`` vision positions per tile, padded to ``max_image_tiles``
tiles in the K/V. Reference: transformers ``MllamaImageProcessor.resize`` / ``get_optimal_tiled_canvas``.
Shapes and units: ``W H`` pixels, ``p`` patch side, ``V`` tokens in the LLM context, ``T`` text, ``C`` context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from vlfuse.budget.families.base import CONTEXT_KEYS, FAMILIES, Family, HFKeys, ImageTokens, check_size

PRE, PROC, CFG = "preprocessor_config.json", "processor_config.json", "config.json"


def internvl_grid(height: int, width: int, tile: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """``(cols, rows)`` with the closest aspect ratio; ties go to more tiles while they cover < 2x the image."""
    grids = sorted(((c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1)
                    if min_tiles <= c * r <= max_tiles), key=lambda g: g[0] * g[1])
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for c, r in grids:
        diff = abs(aspect - c / r)
        if diff < best_diff:
            best, best_diff = (c, r), diff
        elif diff == best_diff and area > 0.5 * tile * tile * c * r:
            best = (c, r)
    return best


@dataclass(frozen=True)
class InternVLSettings:
    tile_size: int = 448  # preprocessor_config.json size
    image_seq_length: int = 256  # processor_config.json: (448 / 14)^2 / 2^2 after pixel shuffle
    min_patches: int = 1  # preprocessor_config.json
    max_patches: int = 12  # preprocessor_config.json
    crop_to_patches: bool = True  # InternVLProcessor always passes True to the image processor
    context: int = 32768  # config.json text_config.max_position_embeddings (Qwen2.5-0.5B)


@FAMILIES.register("internvl", InternVLSettings)
class InternVL(Family):
    """InternVL3-1B: 1 to 12 tiles of 448 px + a thumbnail, 256 tokens per view, inside <img> ... </img>."""

    checkpoint = "OpenGVLab/InternVL3-1B-hf"
    processor = "InternVLProcessor + GotOcr2ImageProcessor"
    model_types = ("internvl",)
    unreleased = ("crop_to_patches",)  # InternVLProcessor.images_kwargs overrides the image processor's value
    hf_keys: ClassVar[HFKeys] = {
        "tile_size": ((PRE, "size.height"),),
        "image_seq_length": ((PROC, "image_seq_length"),),
        "min_patches": ((PRE, "min_patches"),),
        "max_patches": ((PRE, "max_patches"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: InternVLSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        cols = rows = 1
        if s.crop_to_patches and s.max_patches > 1:
            cols, rows = internvl_grid(height, width, s.tile_size, s.min_patches, s.max_patches)
        tiles = cols * rows if cols * rows > 1 else 0
        image = (tiles + 1 if tiles else 1) * s.image_seq_length
        return ImageTokens(image + 2, image, special_tokens=2, tiles=tiles, thumbnail=tiles > 0,
                           resized=(cols * s.tile_size, rows * s.tile_size), grid=(cols, rows))


def mllama_canvas(height: int, width: int, max_tiles: int, tile: int) -> tuple[int, int]:
    """``(rows, cols)`` of tiles: the smallest upscale that fits, else the largest downscale; ties -> least area."""
    arrangements = [(a, b) for a in range(1, max_tiles + 1) for b in range(1, max_tiles + 1) if a * b <= max_tiles]
    scales = [min(a * tile / height, b * tile / width) for a, b in arrangements]  # (rows, cols) = (a, b)
    up = [x for x in scales if x >= 1]
    chosen = min(up) if up else max(x for x in scales if x < 1)
    candidates = [g for g, x in zip(arrangements, scales) if x == chosen]
    return min(candidates, key=lambda g: g[0] * g[1])  # first of the least area, as np.argmin


def mllama_fit(height: int, width: int, canvas_h: int, canvas_w: int, tile: int) -> tuple[int, int]:
    """``(H', W')``: the image scaled into the canvas, aspect kept, sides clipped to ``[tile, canvas]``."""
    target_w, target_h = min(max(width, tile), canvas_w), min(max(height, tile), canvas_h)
    scale_h, scale_w = target_h / height, target_w / width
    if scale_w < scale_h:
        return min(math.floor(height * scale_w) or 1, target_h), target_w
    return target_h, min(math.floor(width * scale_h) or 1, target_w)


@dataclass(frozen=True)
class MllamaSettings:
    tile_size: int = 560  # preprocessor_config.json size.height
    max_image_tiles: int = 4  # preprocessor_config.json
    patch_size: int = 14  # config.json vision_config.patch_size
    context: int = 131072  # config.json text_config.max_position_embeddings


@FAMILIES.register("llama-3.2-vision", MllamaSettings)
class Mllama(Family):
    """Llama-3.2-11B-Vision-Instruct: one <|image|> token in the text; 1601 positions per tile via cross-attention."""

    checkpoint = "meta-llama/Llama-3.2-11B-Vision-Instruct"
    processor = "MllamaProcessor + MllamaImageProcessor"
    model_types = ("mllama",)
    class_defaults: ClassVar[dict[str, Any]] = {"tile_size": 224}
    hf_keys: ClassVar[HFKeys] = {
        "tile_size": ((PRE, "size.height"), (CFG, "vision_config.image_size")),
        "max_image_tiles": ((PRE, "max_image_tiles"), (CFG, "vision_config.max_num_tiles")),
        "patch_size": ((CFG, "vision_config.patch_size"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: MllamaSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        rows, cols = mllama_canvas(height, width, s.max_image_tiles, s.tile_size)
        h, w = mllama_fit(height, width, rows * s.tile_size, cols * s.tile_size, s.tile_size)
        per_tile = (s.tile_size // s.patch_size) ** 2 + 1  # patches + CLS
        return ImageTokens(1, 0, special_tokens=1, tiles=rows * cols, resized=(w, h), grid=(cols, rows),
                           cross_attention_tokens=rows * cols * per_tile,
                           cross_attention_kv=s.max_image_tiles * per_tile,
                           notes=("the LLM context holds one <|image|> token; vision enters via cross-attention",))
