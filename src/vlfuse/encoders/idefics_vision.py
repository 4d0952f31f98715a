"""The IDEFICS vision tower (``transformers`` ``IdeficsVisionTransformer``, a CLIP ViT) as a vlfuse encoder.

IDEFICS (Laurençon et al., 2023, arXiv:2306.16527) hands its perceiver the last hidden states of every token,
CLS included, before ``post_layernorm`` (which only the pooled output goes through), so this encoder does too.
A thin wrapper: the tower is ``transformers``' own module, built from its config; weights come through
``VLM.from_transformers`` (``vlfuse.convert.idefics``). Reference: ``IdeficsModel.forward`` (``image_hidden_states``).
Shapes: ``C`` channels, ``H W`` pixels, ``P`` patches per image, ``Dv`` tower width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers.models.idefics.configuration_idefics import IdeficsVisionConfig
from transformers.models.idefics.vision import IdeficsVisionTransformer

from vlfuse.encoders.base import HFTowerWithCLS, VisionEncoder
from vlfuse.registry import ENCODERS

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # IDEFICS_STANDARD_MEAN / STD of its image processor
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class IdeficsVisionEncoderConfig:
    kind: Literal["idefics_vision"] = "idefics_vision"
    config: dict[str, Any] = field(default_factory=dict)  # an IdeficsVisionConfig as a dict (embed_dim, ...)
    path: str | None = None  # unused (weights come from the whole IDEFICS checkpoint); kept for save/load
    image_mean: tuple[float, ...] | None = None  # None: IDEFICS' (CLIP's) normalisation
    image_std: tuple[float, ...] | None = None
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"


@ENCODERS.register("idefics_vision", IdeficsVisionEncoderConfig)
class IdeficsVisionEncoder(HFTowerWithCLS, VisionEncoder):
    """``IdeficsVisionTransformer``; features are its last hidden states, CLS first.

    Example:
        >>> enc = IdeficsVisionEncoder(IdeficsVisionEncoderConfig(config={"embed_dim": 32, "image_size": 8,
        ...     "patch_size": 2, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48}))
        >>> enc(torch.randn(2, 3, 8, 8)).shape  # 16 patches + CLS
        torch.Size([2, 17, 32])
    """

    def __init__(self, config: IdeficsVisionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        vcfg = IdeficsVisionConfig(**{k: v for k, v in config.config.items() if k != "model_type"})
        vcfg._attn_implementation = config.attn_implementation
        self.tower = IdeficsVisionTransformer(vcfg)
        self.embed_dim = vcfg.embed_dim
        self.image_size, self.patch_size = int(vcfg.image_size), int(vcfg.patch_size)
        self.in_channels = vcfg.num_channels
        self.image_mean = tuple(config.image_mean or CLIP_MEAN)
        self.image_std = tuple(config.image_std or CLIP_STD)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B*N, C, H, W) -> (B*N, 1 + P, Dv)``."""
        self.check_pixels(pixel_values)
        return self.tower(pixel_values=pixel_values).last_hidden_state
