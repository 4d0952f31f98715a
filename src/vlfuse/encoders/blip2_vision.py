"""BLIP-2's vision tower (``transformers.Blip2VisionModel``, EVA-CLIP ViT-g in the released models) as an encoder.

BLIP-2 hands the Q-Former the tower's last hidden states after its final LayerNorm, CLS token included
(``Blip2ForConditionalGeneration.get_image_features``), so ``P = (H / patch) * (W / patch) + 1``.
A thin wrapper: the tower is built from its transformers config; ``VLM.from_transformers`` loads its weights.
Shapes: ``C`` channels, ``H W`` pixels, ``P`` feature vectors per image (patches + CLS), ``Dv`` tower width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import Blip2VisionConfig, Blip2VisionModel

from vlfuse.encoders.base import HFTowerWithCLS, VisionEncoder
from vlfuse.registry import ENCODERS

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # BlipImageProcessor's defaults (OpenAI CLIP statistics)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Blip2VisionEncoderConfig:
    kind: Literal["blip2_vision"] = "blip2_vision"
    config: dict[str, Any] = field(default_factory=dict)  # a Blip2VisionConfig as a dict ({}: ViT-g defaults)
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD


@ENCODERS.register("blip2_vision", Blip2VisionEncoderConfig)
class Blip2VisionEncoder(HFTowerWithCLS, VisionEncoder):
    """``Blip2VisionModel``; features are its post-LayerNorm last hidden states, CLS first.

    Example:
        >>> enc = Blip2VisionEncoder(Blip2VisionEncoderConfig(config={"hidden_size": 32, "intermediate_size": 64,
        ...     "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 8, "patch_size": 2}))
        >>> enc(torch.randn(1, 3, 8, 8)).shape  # 16 patches + CLS
        torch.Size([1, 17, 32])
    """

    def __init__(self, config: Blip2VisionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        vcfg = Blip2VisionConfig.from_dict(dict(config.config))
        self.tower = Blip2VisionModel(vcfg)
        self.embed_dim, self.image_size, self.patch_size = vcfg.hidden_size, vcfg.image_size, vcfg.patch_size
        self.image_mean, self.image_std = tuple(config.image_mean), tuple(config.image_std)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B*N, C, H, W) -> (B*N, P, Dv)``."""
        self.check_pixels(pixel_values)
        return self.tower(pixel_values=pixel_values).last_hidden_state  # (B*N, 1 + patches, Dv)
