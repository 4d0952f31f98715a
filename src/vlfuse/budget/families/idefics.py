"""Idefics2, Idefics3 and SmolVLM: a fixed number of tokens per view, views from splitting the image.

Idefics2 (Laurençon et al., 2024, arXiv:2405.02246): a perceiver resampler turns each view into 64 tokens;
with ``do_image_splitting`` the image is cut into 4 quarters plus the whole, and each view is wrapped in
``<fake_token_around_image>`` (adjacent wrappers merge: 5 views carry 6 of them).
Idefics3 (Laurençon et al., 2024, arXiv:2408.12637) and SmolVLM (Marafioti et al., 2025, arXiv:2504.05299):
the long side is scaled to ``longest_edge`` (up *or* down), both sides rounded up to multiples of the tile,
the image cut into ``rows x cols`` tiles plus one global view; pixel shuffle leaves ``image_seq_len`` tokens per
view. Each tile is ``<fake_token_around_image><row_r_col_c>`` + tokens, each row of tiles ends with ``\\n``, and
the global view is ``\\n<fake_token_around_image><global-img>`` + tokens + ``<fake_token_around_image>``; the last
row's ``\\n`` and the global view's ``\\n`` are one ``\\n\\n`` token in the released tokenizers (Llama 3, SmolLM2).
Reference: transformers ``Idefics3ImageProcessor`` (``resize``, ``resize_for_vision_encoder``, ``split_images``)
and ``Idefics3Processor.replace_image_token``.
Shapes and units: ``W H`` pixels, ``V`` tokens in the LLM context, ``T`` text, ``C`` context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from vlfuse.budget.families.base import CONTEXT_KEYS, FAMILIES, Family, HFKeys, ImageTokens, check_size

PRE, PROC = "preprocessor_config.json", "processor_config.json"
MAX_IMAGE_SIZE = 4096  # transformers' absolute cap on the resized long side (Idefics3 / SmolVLM)


@dataclass(frozen=True)
class Idefics2Settings:
    image_seq_len: int = 64  # processor_config.json: perceiver latents per view
    do_image_splitting: bool = True  # preprocessor_config.json of the instruct (SFT) release; class default False
    shortest_edge: int = 378  # preprocessor_config.json size.shortest_edge
    longest_edge: int = 980  # preprocessor_config.json size.longest_edge
    context: int = 32768  # config.json text_config.max_position_embeddings (Mistral-7B-v0.1)


def idefics2_resize(height: int, width: int, shortest: int, longest: int) -> tuple[int, int]:
    """``(H', W')``: long side capped at ``longest`` (never upscaled), each side at least ``shortest``."""
    aspect = width / height
    if width >= height and width > longest:
        width, height = longest, int(longest / aspect)
    elif height > width and height > longest:
        height, width = longest, int(longest * aspect)
    return max(height, shortest), max(width, shortest)


@FAMILIES.register("idefics2", Idefics2Settings)
class Idefics2(Family):
    """Idefics2-8B: 64 tokens per view; 4 quarters + the whole image when splitting (320 + 6 wrappers)."""

    checkpoint = "HuggingFaceM4/idefics2-8b"
    processor = "Idefics2Processor + Idefics2ImageProcessor"
    model_types = ("idefics2",)
    class_defaults: ClassVar[dict[str, Any]] = {"do_image_splitting": False}
    hf_keys: ClassVar[HFKeys] = {
        "image_seq_len": ((PROC, "image_seq_len"), ("config.json", "perceiver_config.resampler_n_latents")),
        "do_image_splitting": ((PRE, "do_image_splitting"),),
        "shortest_edge": ((PRE, "size.shortest_edge"),),
        "longest_edge": ((PRE, "size.longest_edge"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: Idefics2Settings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        if s.do_image_splitting and height < 2:  # transformers splits before resizing: a 0 px high quarter
            raise ValueError(f"Idefics2's processor cannot split a {width}x{height} image (its top quarters would be "
                             "0 px high); use an image at least 2 px high or --set do_image_splitting=false")
        h, w = idefics2_resize(height, width, s.shortest_edge, s.longest_edge)
        views = 5 if s.do_image_splitting else 1
        image = views * s.image_seq_len
        return ImageTokens(image + views + 1, image, special_tokens=views + 1, tiles=4 if views == 5 else 0,
                           thumbnail=views == 5, resized=(w, h), grid=(2, 2) if views == 5 else (1, 1))


@dataclass(frozen=True)
class Idefics3Settings:
    longest_edge: int = 1456  # preprocessor_config.json size.longest_edge (4 x 364)
    tile_size: int = 364  # preprocessor_config.json max_image_size.longest_edge (SigLIP at 364 px)
    image_seq_len: int = 169  # processor_config.json: (364 / 14)^2 / 2^2 after pixel shuffle
    do_image_splitting: bool = True  # preprocessor_config.json
    context: int = 131072  # config.json text_config.max_position_embeddings (Llama-3.1-8B)


def idefics3_views(width: int, height: int, s: Idefics3Settings) -> tuple[int, int, int, int]:
    """``(W', H', rows, cols)`` after the processor's two resizes; ``rows = cols = 0`` is one global view only."""
    aspect = width / height  # 1) long side to longest_edge, short side even
    if width >= height:
        width, height = s.longest_edge, int(s.longest_edge / aspect)
        height += height % 2
    else:
        height, width = s.longest_edge, int(s.longest_edge * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    if max(height, width) > MAX_IMAGE_SIZE:
        aspect = width / height
        if width >= height:
            width, height = MAX_IMAGE_SIZE, max(int(MAX_IMAGE_SIZE / aspect), 1)
        else:
            height, width = MAX_IMAGE_SIZE, max(int(MAX_IMAGE_SIZE * aspect), 1)
    if not s.do_image_splitting:
        return s.tile_size, s.tile_size, 0, 0
    t, aspect = s.tile_size, width / height  # 2) both sides up to multiples of the tile
    if width >= height:
        width = math.ceil(width / t) * t
        height = math.ceil(int(width / aspect) / t) * t
    else:
        height = math.ceil(height / t) * t
        width = math.ceil(int(height * aspect) / t) * t
    if height > t or width > t:
        return width, height, (height - t) // t + 1, (width - t) // t + 1
    return width, height, 0, 0


@FAMILIES.register("idefics3", Idefics3Settings)
class Idefics3(Family):
    """Idefics3-8B-Llama3: up to 4 x 4 tiles of 364 px + a global view, 169 tokens each."""

    checkpoint = "HuggingFaceM4/Idefics3-8B-Llama3"
    processor = "Idefics3Processor + Idefics3ImageProcessor"
    model_types = ("idefics3",)
    hf_keys: ClassVar[HFKeys] = {
        "longest_edge": ((PRE, "size.longest_edge"),),
        "tile_size": ((PRE, "max_image_size.longest_edge"),),
        "image_seq_len": ((PROC, "image_seq_len"),),
        "do_image_splitting": ((PRE, "do_image_splitting"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: Idefics3Settings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        w, h, rows, cols = idefics3_views(width, height, s)
        tiles = rows * cols
        image = (tiles + 1) * s.image_seq_len
        special = 2 * tiles + 3  # <fake><row_r_col_c> per tile; <fake><global-img> ... <fake> for the global view
        return ImageTokens(image + special + rows, image, special_tokens=special, row_break_tokens=rows,
                           tiles=tiles, thumbnail=tiles > 0, resized=(w, h), grid=(cols, rows) if tiles else (1, 1))


@dataclass(frozen=True)
class SmolVLMSettings(Idefics3Settings):
    longest_edge: int = 1536  # preprocessor_config.json size.longest_edge (4 x 384)
    tile_size: int = 384  # preprocessor_config.json max_image_size.longest_edge
    image_seq_len: int = 81  # processor_config.json: (384 / 14)^2 / 3^2 after pixel shuffle
    context: int = 16384  # config.json text_config.max_position_embeddings (SmolLM2-1.7B, extended)


@FAMILIES.register("smolvlm", SmolVLMSettings)
class SmolVLM(Idefics3):
    """SmolVLM-Instruct (2B): the Idefics3 rule with 384 px tiles and 81 tokens per view."""

    checkpoint = "HuggingFaceTB/SmolVLM-Instruct"
    processor = "SmolVLMProcessor + SmolVLMImageProcessor"
    model_types = ("smolvlm",)
    class_defaults: ClassVar[dict[str, Any]] = {"longest_edge": 4 * 364, "tile_size": 364, "image_seq_len": 169}
