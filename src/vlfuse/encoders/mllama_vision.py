"""The Llama 3.2 Vision tower (``transformers`` ``MllamaVisionModel``) as a vlfuse encoder, on tiled images.

Mllama's tower returns, per tile, its last hidden states (CLS first) concatenated with the hidden states of
``intermediate_layers_indices`` (width ``Dv * (1 + k)``); a linear projector then maps them to the LLM width.
A thin wrapper: the tower is ``transformers``' own module, and the tile position embeddings inside it read
``aspect_ratio_ids``. Its processor is the tiling transform ``vlfuse.data.tiles.TileTransform``: each image is
``T = max_num_tiles`` tiles (unused ones zero, masked by ``aspect_ratio_mask``), and the output keeps every tile,
padded ones included, because in ``transformers`` a token before the first image reads them too (the
cross-attention injection masks them for every other token, given ``aspect_ratio_mask``). A tower of
``max_num_tiles: 1`` also takes plain ``(N, C, H, W)`` images, one square tile each (aspect ratio ``(1, 1)``).
Reference: ``MllamaModel.forward``.
Shapes: ``N`` images (slots), ``T`` tiles, ``C`` channels, ``H W`` a tile's pixels, ``P`` patches per tile (CLS
included), ``Dv'`` output width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers.models.mllama.configuration_mllama import MllamaVisionConfig
from transformers.models.mllama.modeling_mllama import MllamaVisionModel

from vlfuse.data.tiles import TileTransform, arrangements
from vlfuse.encoders.base import HFTowerWithCLS, VisionEncoder
from vlfuse.registry import ENCODERS


@dataclass(frozen=True)
class MllamaVisionEncoderConfig:
    kind: Literal["mllama_vision"] = "mllama_vision"
    config: dict[str, Any] = field(default_factory=dict)  # a MllamaVisionConfig as a dict
    path: str | None = None  # unused (weights come from the whole Mllama checkpoint); kept for save/load
    image_mean: tuple[float, ...] | None = None  # None: Mllama's (CLIP's) normalisation
    image_std: tuple[float, ...] | None = None
    resample: int = 2  # PIL filter of the tiling transform (2: bilinear, transformers' MllamaImageProcessor)


@ENCODERS.register("mllama_vision", MllamaVisionEncoderConfig)
class MllamaVisionEncoder(HFTowerWithCLS, VisionEncoder):
    """``MllamaVisionModel`` on tiled images; ``(N, T, C, H, W)`` -> ``(N, T * P, Dv')``.

    Example:
        >>> enc = MllamaVisionEncoder(MllamaVisionEncoderConfig(config={"hidden_size": 32, "image_size": 8,
        ...     "patch_size": 2, "num_hidden_layers": 2, "num_global_layers": 1, "attention_heads": 2,
        ...     "intermediate_size": 64, "vision_output_dim": 64, "intermediate_layers_indices": [0],
        ...     "max_num_tiles": 1, "supported_aspect_ratios": [[1, 1]]}))
        >>> enc(torch.randn(2, 3, 8, 8)).shape  # 16 patches + CLS, last + one intermediate layer
        torch.Size([2, 17, 64])
    """

    inputs = ("aspect_ratio_ids", "aspect_ratio_mask")

    def __init__(self, config: MllamaVisionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        vcfg = MllamaVisionConfig(**{k: v for k, v in config.config.items() if k != "model_type"})
        ratios = [tuple(r) for r in vcfg.supported_aspect_ratios]
        if ratios != arrangements(vcfg.max_num_tiles):
            raise ValueError(f"supported_aspect_ratios={vcfg.supported_aspect_ratios} are not every (rows, cols) of "
                             f"at most max_num_tiles={vcfg.max_num_tiles} tiles in order, which the tiling transform "
                             f"numbers the aspect-ratio ids by: {arrangements(vcfg.max_num_tiles)}")
        self.square_id = 1 + ratios.index((1, 1))
        self.tower = MllamaVisionModel(vcfg)
        self.embed_dim = vcfg.vision_output_dim
        self.image_size, self.patch_size = int(vcfg.image_size), int(vcfg.patch_size)
        self.in_channels, self.max_tiles = vcfg.num_channels, vcfg.max_num_tiles
        self.image_mean = tuple(config.image_mean or (0.48145466, 0.4578275, 0.40821073))
        self.image_std = tuple(config.image_std or (0.26862954, 0.26130258, 0.27577711))

    def num_patches(self, height: int, width: int) -> int:
        """``T * P``: every tile slot of an image, padded ones included."""
        return self.max_tiles * super().num_patches(height, width)

    def image_transform(self, image: Any) -> TileTransform:
        """The tiling transform of transformers' ``MllamaImageProcessor`` (the model's ``image`` config does not
        apply: tiles are resized and padded as that processor does)."""
        return TileTransform(self.image_size, self.max_tiles, self.image_mean, self.image_std, self.config.resample)

    def forward(self, pixel_values: torch.Tensor, aspect_ratio_ids: torch.Tensor | None = None,
                aspect_ratio_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, T, C, H, W)`` tiles, ``aspect_ratio_ids`` (``N`` entries), ``aspect_ratio_mask`` (``N x T``) ->
        ``(N, T * P, Dv')``; or, with ``max_num_tiles: 1``, ``(N, C, H, W)`` -> ``(N, P, Dv')``."""
        if pixel_values.ndim == 4 and aspect_ratio_ids is None and self.max_tiles == 1:
            pixel_values, aspect_ratio_ids, aspect_ratio_mask = self.square_tiles(pixel_values)
        if pixel_values.ndim != 5 or aspect_ratio_ids is None or aspect_ratio_mask is None:
            raise ValueError(f"pixel_values of shape {tuple(pixel_values.shape)}: give tiles (N, T, C, H, W) with "
                             "aspect_ratio_ids and aspect_ratio_mask (the tiling processor, model.processor(), "
                             "returns all three), or (N, C, H, W) images when max_num_tiles is 1")
        n, t = pixel_values.shape[:2]
        self.check_pixels(pixel_values.flatten(0, 1))
        if t != self.max_tiles or aspect_ratio_ids.numel() != n or aspect_ratio_mask.numel() != n * t:
            raise ValueError(f"{n} images of {t} tiles, {aspect_ratio_ids.numel()} aspect_ratio_ids and "
                             f"{aspect_ratio_mask.numel()} aspect_ratio_mask entries; the tower takes "
                             f"{self.max_tiles} tiles per image, one id per image and one mask entry per tile")
        ids = aspect_ratio_ids.reshape(1, n).to(pixel_values.device)  # (1, N)
        mask = aspect_ratio_mask.reshape(1, n, t).to(pixel_values.device)  # (1, N, T)
        out = self.tower(pixel_values=pixel_values[None], aspect_ratio_ids=ids,
                         aspect_ratio_mask=mask).last_hidden_state  # (1, N, T, P, Dv')
        return out[0].flatten(1, 2)  # (N, T * P, Dv')

    def square_tiles(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(N, C, H, W)`` -> tiles ``(N, T, C, H, W)`` (the first real), ids ``(N,)``, mask ``(N, T)``."""
        n = pixel_values.shape[0]
        tiles = pixel_values.new_zeros(n, self.max_tiles, *pixel_values.shape[1:])  # (N, T, C, H, W)
        tiles[:, 0] = pixel_values
        ids = torch.full((n,), self.square_id, dtype=torch.long, device=pixel_values.device)  # (N,)
        mask = torch.zeros(n, self.max_tiles, dtype=torch.long, device=pixel_values.device)
        mask[:, 0] = 1  # (N, T): only the first tile is real
        return tiles, ids, mask
