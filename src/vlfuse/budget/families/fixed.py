"""Families whose images always cost the same: the image is squashed or cropped to one square view.

BLIP-2 (Li et al., 2023, arXiv:2301.12597): a Q-Former reads the ViT features with 32 learned queries, and the
32 outputs are the image in the LLM context. PaliGemma (Beyer et al., 2024, arXiv:2407.07726): SigLIP at 224,
448 or 896 px, ``(side / 14)^2`` = 256 / 1024 / 4096 tokens, no delimiters. Chameleon (Chameleon Team, 2024,
arXiv:2405.09818): a VQ tokenizer turns a 512 px image into 1024 discrete codes between ``<racm3:break>`` and
``<eoss>``. Gemma 3 (Gemma Team, 2025, arXiv:2503.19786): SigLIP at 896 px average-pooled to 256 soft tokens,
written as ``\\n\\n<start_of_image>`` + 256 + ``<end_of_image>\\n\\n`` (``\\n\\n`` is one token); optional
pan-and-scan adds crops, each another 260-token view. References: transformers ``Blip2Processor``,
``PaliGemmaProcessor``, ``ChameleonProcessor``, ``Gemma3Processor`` and ``Gemma3ImageProcessor.pan_and_scan``.
Shapes and units: ``W H`` pixels, ``V`` tokens in the LLM context, ``T`` text, ``C`` context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from vlfuse.budget.families.base import CONTEXT_KEYS, FAMILIES, Family, HFKeys, ImageTokens, check_size

PRE, PROC, CFG = "preprocessor_config.json", "processor_config.json", "config.json"


@dataclass(frozen=True)
class Blip2Settings:
    num_query_tokens: int = 32  # processor_config.json / config.json num_query_tokens
    image_size: int = 224  # preprocessor_config.json size
    context: int = 2048  # config.json text_config.max_position_embeddings (OPT-2.7B)


@FAMILIES.register("blip2", Blip2Settings)
class Blip2(Family):
    """BLIP-2 OPT-2.7B: 32 Q-Former outputs per image, whatever its size."""

    checkpoint = "Salesforce/blip2-opt-2.7b"
    processor = "Blip2Processor + BlipImageProcessor"
    model_types = ("blip-2",)
    hf_keys: ClassVar[HFKeys] = {
        "num_query_tokens": ((PROC, "num_query_tokens"), (CFG, "num_query_tokens")),
        "image_size": ((PRE, "size.height"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: Blip2Settings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        q = s.num_query_tokens
        return ImageTokens(q, q, resized=(s.image_size, s.image_size), grid=(1, 1))


@dataclass(frozen=True)
class PaliGemmaSettings:
    image_seq_length: int = 256  # preprocessor_config.json: (224 / 14)^2
    image_size: int = 224  # preprocessor_config.json size
    context: int = 8192  # config.json text_config.max_position_embeddings (Gemma-2B)


@FAMILIES.register("paligemma", PaliGemmaSettings)
class PaliGemma(Family):
    """PaliGemma-3B-pt-224: 256 tokens (448 px checkpoints: 1024; 896 px: 4096)."""

    checkpoint = "google/paligemma-3b-pt-224"
    processor = "PaliGemmaProcessor + SiglipImageProcessor"
    model_types = ("paligemma",)
    hf_keys: ClassVar[HFKeys] = {
        "image_seq_length": ((PRE, "image_seq_length"), (PROC, "image_seq_length")),
        "image_size": ((PRE, "size.height"), (CFG, "vision_config.image_size")),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: PaliGemmaSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        return ImageTokens(s.image_seq_length, s.image_seq_length, resized=(s.image_size, s.image_size), grid=(1, 1))


@dataclass(frozen=True)
class ChameleonSettings:
    image_seq_length: int = 1024  # processor_config.json: 32 x 32 VQ codes
    image_size: int = 512  # preprocessor_config.json crop_size
    context: int = 4096  # config.json max_position_embeddings


@FAMILIES.register("chameleon", ChameleonSettings)
class Chameleon(Family):
    """Chameleon-7B: 1024 VQ codes between a start and an end token."""

    checkpoint = "facebook/chameleon-7b"
    processor = "ChameleonProcessor + ChameleonImageProcessor"
    model_types = ("chameleon",)
    hf_keys: ClassVar[HFKeys] = {
        "image_seq_length": ((PROC, "image_seq_length"),),
        "image_size": ((PRE, "crop_size.height"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: ChameleonSettings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        v = s.image_seq_length
        return ImageTokens(v + 2, v, special_tokens=2, resized=(s.image_size, s.image_size), grid=(1, 1))


@dataclass(frozen=True)
class Gemma3Settings:
    image_seq_length: int = 256  # processor_config.json mm_tokens_per_image
    image_size: int = 896  # preprocessor_config.json size
    do_pan_and_scan: bool = False  # Gemma3Processor passes False unless the call asks for it
    pan_and_scan_min_crop_size: int = 256  # Gemma3Processor images_kwargs default
    pan_and_scan_max_num_crops: int = 4
    pan_and_scan_min_ratio_to_activate: float = 1.2
    context: int = 131072  # config.json text_config.max_position_embeddings (Gemma-3-4B)


def pan_and_scan_crops(width: int, height: int, s: Gemma3Settings) -> int:
    """Number of pan-and-scan crops (0: none) for a ``width x height`` image (Gemma 3)."""
    long, short = max(width, height), min(width, height)
    if long / short < s.pan_and_scan_min_ratio_to_activate:
        return 0
    n = min(math.floor(long / short + 0.5), math.floor(long / s.pan_and_scan_min_crop_size))  # half rounds up
    n = min(s.pan_and_scan_max_num_crops, max(2, n))
    crop_long = math.ceil(long / n)
    return n if min(crop_long, short) >= s.pan_and_scan_min_crop_size else 0


PAS_TEXT_TOKENS = 15  # "Here is the original image" + "and here are some crops to help you see better", a word each


@FAMILIES.register("gemma3", Gemma3Settings)
class Gemma3(Family):
    """Gemma-3-4B-it: 256 soft tokens + 4 delimiters per view; pan-and-scan crops are extra views."""

    checkpoint = "google/gemma-3-4b-it"
    processor = "Gemma3Processor + Gemma3ImageProcessor"
    model_types = ("gemma3",)
    unreleased = ("do_pan_and_scan", "pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops",
                  "pan_and_scan_min_ratio_to_activate")  # null in the release; Gemma3Processor's defaults
    hf_keys: ClassVar[HFKeys] = {
        "image_seq_length": ((PROC, "image_seq_length"), (CFG, "mm_tokens_per_image")),
        "image_size": ((PRE, "size.height"),),
        "context": CONTEXT_KEYS,
    }

    def count(self, width: int, height: int, s: Gemma3Settings, *, images_in_prompt: int = 1) -> ImageTokens:
        check_size(width, height)
        crops = pan_and_scan_crops(width, height, s) if s.do_pan_and_scan else 0
        views = 1 + crops
        image = views * s.image_seq_length
        special = views * 4 + (PAS_TEXT_TOKENS if crops else 0)  # \n\n <start_of_image> ... <end_of_image> \n\n
        notes = (f"pan-and-scan: {crops} crops; the sentence around them is counted as {PAS_TEXT_TOKENS} tokens, "
                 "one per word",) if crops else ()
        return ImageTokens(image + special, image, special_tokens=special, tiles=crops, thumbnail=crops > 0,
                           resized=(s.image_size, s.image_size), grid=(1, 1), notes=notes)
