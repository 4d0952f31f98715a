"""Native-resolution families with a row-break token: Pixtral and Fuyu.

Pixtral (Agrawal et al., 2024, arXiv:2410.07073): the image is scaled down (never up) so its long side fits
``longest_edge``, each side rounded up to whole 16 px patches; every patch is one token, each row of patches ends
with ``[IMG_BREAK]`` and the last one with ``[IMG_END]``: ``V = rows * (cols + 1)``. Reference: transformers
``PixtralImageProcessor`` (``get_resize_output_image_size``) and ``PixtralProcessor.replace_image_token``.
Fuyu (Adept, 2023, "Fuyu-8B: a multimodal architecture for AI agents"): no vision encoder; the image is scaled
down to fit 1080 x 1920, cut into 30 x 30 px patches that are linearly projected, with one ``|NEWLINE|`` per row:
``V = ceil(H'/30) * (ceil(W'/30) + 1)``. Reference: transformers ``FuyuImageProcessor.resize`` and
``FuyuProcessor._process_images``. The ``<s>`` Fuyu's processor writes after the image is the text's BOS and is
not counted here.
Shapes and units: ``W H`` pixels, ``p`` patch side, ``V`` tokens in the LLM context, ``T`` text, ``C`` context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from vlfuse.budget.families.base import CONTEXT_KEYS, FAMILIES, Family, HFKeys, ImageTokens, check_size

PRE, PROC, CFG = "preprocessor_config.json", "processor_config.json", "config.json"


@dataclass(frozen=True)
class PixtralSettings:
    patch_size: int = 16  # processor_config.json / config.json vision_config.patch_size
    spatial_merge_size: int = 1  # processor_config.json (Mistral-Small-3.1 uses 2)
    longest_edge: int = 1024  # preprocessor_config.json size.longest_edge
    context: int = 131072  # the 128k context of Mistral NeMo, Pixtral's LLM


@FAMILIES.register("pixtral", PixtralSettings)
class Pixtral(Family):
    """Pixtral-12B: one token per 16 px patch up to 64 x 64 patches, [IMG_BREAK] per row, [IMG_END] last."""

    checkpoint = "mistral-community/pixtral-12b"
    processor = "PixtralProcessor + PixtralImageProcessor"
    model_types = ("llava/pixtral", "pixtral")
    hf_keys: ClassVar[HFKeys] = {
        "patch_size": ((PROC, "patch_size"), (CFG, "vision_config.patch_size")),
        "spatial_merge_size": ((PROC, "spatial_merge_size"), (CFG, "spatial_merge_size")),
        "longest_edge": ((PRE, "size.longest_edge"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: PixtralSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        p = s.patch_size * s.spatial_merge_size  # pixels per LLM token side
        ratio = max(height / s.longest_edge, width / s.longest_edge)
        if ratio > 1:  # scale down with floor so the long side stays within longest_edge
            height, width = math.floor(height / ratio), math.floor(width / ratio)
        rows, cols = (height - 1) // p + 1, (width - 1) // p + 1  # ceil: the last partial patch is padded
        image = rows * cols
        return ImageTokens(image + rows, image, special_tokens=1, row_break_tokens=rows - 1,
                           resized=(cols * p, rows * p), grid=(cols, rows))


@dataclass(frozen=True)
class FuyuSettings:
    max_height: int = 1080  # preprocessor_config.json size.height (images are padded to this canvas)
    max_width: int = 1920  # preprocessor_config.json size.width
    patch_size: int = 30  # preprocessor_config.json patch_size
    context: int = 16384  # config.json max_position_embeddings (Persimmon-8B)


@FAMILIES.register("fuyu", FuyuSettings)
class Fuyu(Family):
    """Fuyu-8B: 30 px patches straight into the decoder, |NEWLINE| after each row, up to 36 x 64 patches."""

    checkpoint = "adept/fuyu-8b"
    processor = "FuyuProcessor + FuyuImageProcessor"
    model_types = ("fuyu",)
    hf_keys: ClassVar[HFKeys] = {
        "max_height": ((PRE, "size.height"),),
        "max_width": ((PRE, "size.width"),),
        "patch_size": ((PRE, "patch_size.height"), (CFG, "patch_size")),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: FuyuSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        if width > s.max_width or height > s.max_height:  # only ever scaled down
            scale = min(s.max_height / height, s.max_width / width)
            height, width = int(height * scale), int(width * scale)
        p = s.patch_size
        h = min(s.max_height, math.ceil(height / p) * p)
        w = min(s.max_width, math.ceil(width / p) * p)
        rows, cols = h // p, w // p
        return ImageTokens(rows * (cols + 1), rows * cols, row_break_tokens=rows, resized=(width, height),
                           grid=(cols, rows))
