"""The Llama 3.2 Vision tower (``transformers`` ``MllamaVisionModel``) as a vlfuse encoder, one tile per image.

Mllama's tower returns, per tile, its last hidden states (CLS first) concatenated with the hidden states of
``intermediate_layers_indices`` (width ``Dv * (1 + k)``); a linear projector then maps them to the LLM width.
A thin wrapper: the tower is ``transformers``' own module. vlfuse images are one square tile each (aspect-ratio id
1, ``(1, 1)``); the other ``max_num_tiles - 1`` tile slots are zero padding masked out by ``aspect_ratio_mask``, as
the Mllama processor pads them, and dropped from the output. Splitting a large image into several tiles (the
Mllama image processor's job) is not done here. Reference: ``MllamaModel.forward``.
Shapes: ``C`` channels, ``H W`` pixels, ``P`` patches per tile (CLS included), ``Dv'`` output width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers.models.mllama.configuration_mllama import MllamaVisionConfig
from transformers.models.mllama.modeling_mllama import MllamaVisionModel

from vlfuse.encoders.base import HFTowerWithCLS, VisionEncoder
from vlfuse.registry import ENCODERS


@dataclass(frozen=True)
class MllamaVisionEncoderConfig:
    kind: Literal["mllama_vision"] = "mllama_vision"
    config: dict[str, Any] = field(default_factory=dict)  # a MllamaVisionConfig as a dict
    path: str | None = None  # unused (weights come from the whole Mllama checkpoint); kept for save/load
    image_mean: tuple[float, ...] | None = None  # None: Mllama's (CLIP's) normalisation
    image_std: tuple[float, ...] | None = None


@ENCODERS.register("mllama_vision", MllamaVisionEncoderConfig)
class MllamaVisionEncoder(HFTowerWithCLS, VisionEncoder):
    """``MllamaVisionModel`` on one tile per image; ``(N, C, H, W) -> (N, P, Dv')``.

    Example:
        >>> enc = MllamaVisionEncoder(MllamaVisionEncoderConfig(config={"hidden_size": 32, "image_size": 8,
        ...     "patch_size": 2, "num_hidden_layers": 2, "num_global_layers": 1, "attention_heads": 2,
        ...     "intermediate_size": 64, "vision_output_dim": 64, "intermediate_layers_indices": [0],
        ...     "max_num_tiles": 1, "supported_aspect_ratios": [[1, 1]]}))
        >>> enc(torch.randn(2, 3, 8, 8)).shape  # 16 patches + CLS, last + one intermediate layer
        torch.Size([2, 17, 64])
    """

    def __init__(self, config: MllamaVisionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        vcfg = MllamaVisionConfig(**{k: v for k, v in config.config.items() if k != "model_type"})
        if [1, 1] not in [list(r) for r in vcfg.supported_aspect_ratios]:
            raise ValueError(f"supported_aspect_ratios={vcfg.supported_aspect_ratios} lacks [1, 1], the one tile "
                             "vlfuse gives each image")
        self.tile_id = 1 + [list(r) for r in vcfg.supported_aspect_ratios].index([1, 1])
        self.tower = MllamaVisionModel(vcfg)
        self.embed_dim = vcfg.vision_output_dim
        self.image_size, self.patch_size = int(vcfg.image_size), int(vcfg.patch_size)
        self.in_channels, self.max_tiles = vcfg.num_channels, vcfg.max_num_tiles
        self.image_mean = tuple(config.image_mean or (0.48145466, 0.4578275, 0.40821073))
        self.image_std = tuple(config.image_std or (0.26862954, 0.26130258, 0.27577711))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, P, Dv')``."""
        self.check_pixels(pixel_values)
        n = pixel_values.shape[0]
        tiles = pixel_values.new_zeros(1, n, self.max_tiles, *pixel_values.shape[1:])  # (1, N, tiles, C, H, W)
        tiles[0, :, 0] = pixel_values
        ids = torch.full((1, n), self.tile_id, dtype=torch.long, device=pixel_values.device)  # (1, N)
        mask = torch.zeros(1, n, self.max_tiles, dtype=torch.long, device=pixel_values.device)
        mask[..., 0] = 1  # (1, N, tiles): only the first tile is real
        out = self.tower(pixel_values=tiles, aspect_ratio_ids=ids, aspect_ratio_mask=mask).last_hidden_state
        return out[0, :, 0]  # (N, P, Dv')
