"""The LLaVA line: one fixed crop (1.5), any-resolution tiles (NeXT), any-resolution with a token cap (OneVision).

LLaVA-1.5 (Liu et al., 2023, arXiv:2310.03744): resize the short side, centre-crop, one CLIP view,
``V = (crop / p)^2``. LLaVA-NeXT (Liu et al., 2024, "LLaVA-NeXT: improved reasoning, OCR, and world knowledge"):
pick the grid pinpoint that keeps the most pixels (``select_best_resolution``), encode its tiles plus a base view,
drop the feature rows/columns that only cover padding and append one learned ``image_newline`` per feature row.
LLaVA-OneVision (Li et al., 2024, arXiv:2408.03326) adds ``anyres_max_9``: if the unpadded grid exceeds 9 tiles'
worth of features it is bilinearly pooled down by ``ratio``; with several images per prompt each image is one
base view plus one newline. Reference: transformers ``LlavaNextProcessor._get_number_of_features`` and
``LlavaOnevisionProcessor._get_unpadded_features``.
Shapes and units: ``W H`` pixels, ``p`` patch side, ``V`` tokens in the LLM context, ``T`` text, ``C`` context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from vlfuse.budget.families.base import CONTEXT_KEYS, FAMILIES, Family, HFKeys, ImageTokens, check_size

PRE, PROC, CFG = "preprocessor_config.json", "processor_config.json", "config.json"
NEXT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))  # (H, W) canvases
OV_PINPOINTS = tuple((384 * a, 384 * b) for a in range(1, 7) for b in range(1, 7))  # 1x1 .. 6x6 tiles of 384


def select_best_resolution(height: int, width: int, pinpoints: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """The ``(H, W)`` canvas that keeps the most original pixels, then wastes the fewest (LLaVA-NeXT)."""
    best, best_effective, best_waste = pinpoints[0], 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = w * h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (h, w), effective, waste
    return best


def unpadded_grid(height: int, width: int, rows: int, cols: int) -> tuple[int, int]:
    """``(rows, cols)`` of the canvas feature grid once the rows or columns that only cover padding are dropped."""
    if width / height > cols / rows:  # wider than the canvas: padding above and below
        new_rows = int(round(height * (cols / width), 7))
        rows -= ((rows - new_rows) // 2) * 2
    else:  # taller: padding left and right
        new_cols = int(round(width * (rows / height), 7))
        cols -= ((cols - new_cols) // 2) * 2
    return rows, cols


def _anyres(width: int, height: int, tile: int, side: int, pinpoints, max_tiles: int | None) -> dict:
    """Shared NeXT/OneVision arithmetic; ``side`` is the feature grid side of one tile."""
    check_size(width, height)
    canvas_h, canvas_w = select_best_resolution(height, width, pinpoints)
    rows, cols = canvas_h // tile, canvas_w // tile
    fr, fc = unpadded_grid(height, width, side * rows, side * cols)  # feature rows, cols
    pooled = False
    if max_tiles is not None:
        ratio = math.sqrt(fr * fc / (max_tiles * side**2))
        if ratio > 1.1:  # OneVision pools the unpadded grid down to about max_tiles tiles of features
            fr, fc, pooled = int(fr // ratio), int(fc // ratio), True
    features, newlines = fr * fc, fr  # one image_newline per feature row
    return {"features": features, "newlines": newlines, "grid": (cols, rows), "canvas": (canvas_w, canvas_h),
            "pooled": pooled}


@dataclass(frozen=True)
class Llava15Settings:
    crop_size: int = 336  # preprocessor_config.json crop_size (after resizing the short side to 336)
    patch_size: int = 14  # processor_config.json patch_size (CLIP ViT-L/14-336); the processor has no default
    vision_feature_select_strategy: str | None = "default"  # "default" drops the CLS feature
    num_additional_image_tokens: int = 1  # processor_config.json: CLIP's CLS token
    context: int = 4096  # config.json text_config.max_position_embeddings (Vicuna-7B)


LLAVA_KEYS = {
    "patch_size": ((PROC, "patch_size"), (CFG, "vision_config.patch_size")),
    "vision_feature_select_strategy": ((PROC, "vision_feature_select_strategy"),
                                       (CFG, "vision_feature_select_strategy")),
    "num_additional_image_tokens": ((PROC, "num_additional_image_tokens"),),
    "context": CONTEXT_KEYS,
}


def _cls_adjust(s) -> int:
    """+CLS (``num_additional_image_tokens``) then -1 when the "default" strategy drops it again."""
    return s.num_additional_image_tokens - (1 if s.vision_feature_select_strategy == "default" else 0)


@FAMILIES.register("llava-1.5", Llava15Settings)
class Llava15(Family):
    """LLaVA-1.5-7B: every image becomes one 336 px centre crop, 576 tokens."""

    checkpoint = "llava-hf/llava-1.5-7b-hf"
    processor = "LlavaProcessor + CLIPImageProcessor"
    model_types = ("llava/clip_vision_model",)
    class_defaults: ClassVar[dict[str, Any]] = {
        "crop_size": 224, "num_additional_image_tokens": 0, "vision_feature_select_strategy": None}
    hf_keys: ClassVar[HFKeys] = {**LLAVA_KEYS, "crop_size": ((PRE, "crop_size.height"), (PRE, "crop_size"))}

    def count(self, width: int, height: int, s: Llava15Settings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        side = s.crop_size // s.patch_size
        v = side * side + _cls_adjust(s)
        return ImageTokens(v, v, resized=(s.crop_size, s.crop_size), grid=(1, 1),
                           notes=("short side resized to the crop size, then centre-cropped: the rest is lost",)
                           if width != height else ())


@dataclass(frozen=True)
class LlavaNextSettings:
    tile_size: int = 336  # preprocessor_config.json crop_size / size.shortest_edge
    image_grid_pinpoints: tuple[tuple[int, int], ...] = NEXT_PINPOINTS  # config.json, (H, W) canvases
    patch_size: int = 14  # processor_config.json patch_size
    vision_feature_select_strategy: str | None = "default"
    num_additional_image_tokens: int = 1  # processor_config.json
    context: int = 32768  # config.json text_config.max_position_embeddings (Mistral-7B-Instruct-v0.2)


@FAMILIES.register("llava-next", LlavaNextSettings)
class LlavaNext(Family):
    """LLaVA-v1.6-Mistral-7B: base view + up to 2x2 / 1x3 / 3x1 tiles of 336 px, newline per feature row."""

    checkpoint = "llava-hf/llava-v1.6-mistral-7b-hf"
    processor = "LlavaNextProcessor + LlavaNextImageProcessor"
    model_types = ("llava_next",)
    class_defaults: ClassVar[dict[str, Any]] = {
        "tile_size": 224, "num_additional_image_tokens": 0, "vision_feature_select_strategy": None}
    hf_keys: ClassVar[HFKeys] = {**LLAVA_KEYS, "tile_size": ((PRE, "crop_size.height"), (PRE, "size.shortest_edge")),
               "image_grid_pinpoints": ((PRE, "image_grid_pinpoints"), (CFG, "image_grid_pinpoints"))}

    def count(self, width: int, height: int, s: LlavaNextSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        side = s.tile_size // s.patch_size
        a = _anyres(width, height, s.tile_size, side, s.image_grid_pinpoints, None)
        base = side * side + _cls_adjust(s)
        return ImageTokens(base + a["features"] + a["newlines"], base + a["features"],
                           row_break_tokens=a["newlines"], tiles=a["grid"][0] * a["grid"][1], thumbnail=True,
                           resized=a["canvas"], grid=a["grid"])


@dataclass(frozen=True)
class LlavaOnevisionSettings:
    tile_size: int = 384  # preprocessor_config.json size (SigLIP-so400m/14 at 384 px)
    image_grid_pinpoints: tuple[tuple[int, int], ...] = OV_PINPOINTS  # 1x1 .. 6x6 tiles of 384 px
    num_image_tokens: int = 729  # processor_config.json: 27 x 27 features per tile
    vision_feature_select_strategy: str | None = "full"  # processor_config.json: SigLIP has no CLS to drop
    vision_aspect_ratio: str = "anyres_max_9"  # processor_config.json: pool down to about 9 tiles of features
    context: int = 32768  # config.json text_config.max_position_embeddings (Qwen2-7B)


@FAMILIES.register("llava-onevision", LlavaOnevisionSettings)
class LlavaOnevision(Family):
    """LLaVA-OneVision-Qwen2-7B-ov: anyres up to 6x6 tiles, capped near 9 tiles of features; 730 per image in
    multi-image prompts."""

    checkpoint = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
    processor = "LlavaOnevisionProcessor + LlavaOnevisionImageProcessor"
    model_types = ("llava_onevision",)
    class_defaults: ClassVar[dict[str, Any]] = {"vision_feature_select_strategy": None}
    hf_keys: ClassVar[HFKeys] = {
        "tile_size": ((PRE, "size.height"), (PRE, "size.shortest_edge")),
        "image_grid_pinpoints": ((PRE, "image_grid_pinpoints"), (CFG, "image_grid_pinpoints")),
        "num_image_tokens": ((PROC, "num_image_tokens"),),
        "vision_feature_select_strategy": LLAVA_KEYS["vision_feature_select_strategy"],
        "vision_aspect_ratio": ((PROC, "vision_aspect_ratio"), (CFG, "vision_aspect_ratio")),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: LlavaOnevisionSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        drop = 1 if s.vision_feature_select_strategy == "default" else 0
        side = math.isqrt(s.num_image_tokens)
        if images_in_prompt > 1:  # multi-image prompts: the base view only, plus one newline
            check_size(width, height)
            return ImageTokens(s.num_image_tokens + 1 - drop, s.num_image_tokens - drop, row_break_tokens=1,
                               resized=(s.tile_size, s.tile_size), grid=(1, 1),
                               notes=(f"{images_in_prompt} images in one prompt: base view only",))
        max_tiles = int(s.vision_aspect_ratio.removeprefix("anyres_max_"))
        a = _anyres(width, height, s.tile_size, side, s.image_grid_pinpoints, max_tiles)
        image = s.num_image_tokens + a["features"] - drop
        notes = (f"unpadded grid pooled down to about {max_tiles} tiles of features",) if a["pooled"] else ()
        return ImageTokens(image + a["newlines"], image, row_break_tokens=a["newlines"],
                           tiles=a["grid"][0] * a["grid"][1], thumbnail=True, resized=a["canvas"], grid=a["grid"],
                           notes=notes)

    def count_video(self, width: int, height: int, frames: int, s: LlavaOnevisionSettings) -> ImageTokens:
        check_size(width, height)
        pooled = math.ceil(math.isqrt(s.num_image_tokens) / 2)  # 2x2 pooling of each frame's 27 x 27 features
        v = frames * pooled * pooled
        return ImageTokens(v + 1, v, row_break_tokens=1, resized=(s.tile_size, s.tile_size), frames=frames,
                           notes=(f"{frames} frames x {pooled}x{pooled} pooled features + one newline",))
