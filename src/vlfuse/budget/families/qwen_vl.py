"""Qwen2-VL and Qwen2.5-VL: native resolution, ``smart_resize`` to multiples of 28 px, 2x2 patch merge.

Qwen2-VL (Wang et al., 2024, arXiv:2409.12191); reference: transformers ``Qwen2VLImageProcessor.smart_resize``
and ``Qwen2VLProcessor.replace_image_token`` (``image_grid_thw.prod() // merge_size**2`` pad tokens).
The image is resized so both sides are multiples of ``p * merge`` (28 px) and its area lies in
``[min_pixels, max_pixels]``; each 28 x 28 block becomes one LLM token, so ``V = (H'/28) * (W'/28)`` plus the
``<|vision_start|>`` and ``<|vision_end|>`` the chat template puts around the pads.
Video: frames are padded to a multiple of ``temporal_patch_size`` (2) and each pair of frames shares a token grid.
Shapes and units: ``W H`` pixels, ``p`` patch side, ``V`` tokens in the LLM context, ``T`` text, ``C`` context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from vlfuse.budget.families.base import CONTEXT_KEYS, FAMILIES, Family, HFKeys, ImageTokens, check_size

PRE = "preprocessor_config.json"


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """``(H', W')``: multiples of ``factor`` with ``min_pixels <= H' * W' <= max_pixels``, aspect kept (Qwen2-VL)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"Qwen2-VL's processor rejects aspect ratios above 200, got {width}x{height} "
                         f"({max(height, width) / min(height, width):.0f}:1); crop or pad the image first")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class QwenVLSettings:
    min_pixels: int = 3136  # preprocessor_config.json "min_pixels" (56 * 56)
    max_pixels: int = 12845056  # preprocessor_config.json "max_pixels" (16384 * 28 * 28); class default 1003520
    patch_size: int = 14  # preprocessor_config.json "patch_size"
    merge_size: int = 2  # preprocessor_config.json "merge_size": merge x merge patches -> one LLM token
    temporal_patch_size: int = 2  # frames per temporal patch (videos)
    video_min_pixels: int = 100352  # Qwen2VLVideoProcessor default (128 * 28 * 28)
    video_max_pixels: int = 602112  # Qwen2VLVideoProcessor default (768 * 28 * 28)
    context: int = 32768  # config.json max_position_embeddings


@FAMILIES.register("qwen2-vl", QwenVLSettings)
class Qwen2VL(Family):
    """Qwen2-VL-7B-Instruct: 28 x 28 px per token, between 4 and 16384 tokens per image."""

    checkpoint = "Qwen/Qwen2-VL-7B-Instruct"
    processor = "Qwen2VLProcessor + Qwen2VLImageProcessor"
    model_types = ("qwen2_vl",)
    class_defaults: ClassVar[dict[str, Any]] = {"max_pixels": 28 * 28 * 1280, "min_pixels": 56 * 56}
    unreleased = ("video_min_pixels", "video_max_pixels")
    hf_keys: ClassVar[HFKeys] = {
        "min_pixels": ((PRE, "min_pixels"), (PRE, "size.shortest_edge")),
        "max_pixels": ((PRE, "max_pixels"), (PRE, "size.longest_edge")),
        "patch_size": ((PRE, "patch_size"), ("config.json", "vision_config.patch_size")),
        "merge_size": ((PRE, "merge_size"), ("config.json", "vision_config.spatial_merge_size")),
        "temporal_patch_size": ((PRE, "temporal_patch_size"),),
        "video_min_pixels": (("video_preprocessor_config.json", "size.shortest_edge"),),
        "video_max_pixels": (("video_preprocessor_config.json", "size.longest_edge"),),
        "context": CONTEXT_KEYS,
    }

    def _grid(self, width: int, height: int, s: QwenVLSettings, lo: int, hi: int) -> tuple[int, int, int, int]:
        check_size(width, height)
        factor = s.patch_size * s.merge_size
        h, w = smart_resize(height, width, factor, lo, hi)
        return w, h, w // factor, h // factor  # resized W', H'; token grid cols, rows

    def count(self, width: int, height: int, s: QwenVLSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        w, h, cols, rows = self._grid(width, height, s, s.min_pixels, s.max_pixels)
        v = cols * rows  # (H'/p * W'/p) patches // merge**2
        return ImageTokens(v + 2, v, special_tokens=2, resized=(w, h), grid=(cols, rows))

    def count_video(self, width: int, height: int, frames: int, s: QwenVLSettings) -> ImageTokens:
        w, h, cols, rows = self._grid(width, height, s, s.video_min_pixels, s.video_max_pixels)
        t = math.ceil(frames / s.temporal_patch_size)  # frames padded to a multiple of temporal_patch_size
        v = t * cols * rows
        return ImageTokens(v + 2, v, special_tokens=2, resized=(w, h), grid=(cols, rows), frames=frames,
                           notes=(f"{frames} frames -> {t} temporal patches of {cols}x{rows} tokens",))


@dataclass(frozen=True)
class Qwen25VLSettings(QwenVLSettings):
    context: int = 128000  # config.json max_position_embeddings of the 7B release


@FAMILIES.register("qwen2.5-vl", Qwen25VLSettings)
class Qwen25VL(Qwen2VL):
    """Qwen2.5-VL-7B-Instruct: the Qwen2-VL image rule and settings, a 128k-position LLM."""

    checkpoint = "Qwen/Qwen2.5-VL-7B-Instruct"
    processor = "Qwen2_5_VLProcessor + Qwen2VLImageProcessor"
    model_types = ("qwen2_5_vl",)
