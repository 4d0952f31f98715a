"""The vision-encoder slot: pixels in, a sequence of feature vectors per image out.

Shapes: ``B`` batch, ``N`` images, ``C`` channels, ``H W`` pixels, ``P`` patches per image, ``Dv`` vision width.
An encoder maps ``pixel_values (B*N, C, H, W)`` to ``features (B*N, P, Dv)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class VisionEncoder(nn.Module, ABC):
    """Base of every registered encoder.

    Subclasses set ``embed_dim`` (``Dv``), ``image_size`` (square side in pixels the encoder expects),
    ``in_channels``, ``image_mean`` and ``image_std`` (the normalisation its weights were trained with).
    """

    embed_dim: int
    image_size: int
    inputs: tuple[str, ...] = ()  # batch keys besides pixel_values that forward reads, as keywords (e.g. tiles)
    in_channels: int = 3
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @abstractmethod
    def num_patches(self, height: int, width: int) -> int:
        """``P``, the number of feature vectors for an image of ``height x width`` pixels."""

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B*N, C, H, W) -> (B*N, P, Dv)``."""

    def image_transform(self, image: Any) -> Callable[[Any], Any]:
        """The transform the processor applies to each image under the model's ``ImageConfig`` ``image``: resize,
        filter and rescale as saved, then this encoder's normalisation (an encoder with its own preprocessing,
        e.g. tiles, returns its own)."""
        from vlfuse.data.transforms import image_transform

        return image_transform(self, image)

    def check_pixels(self, pixel_values: torch.Tensor) -> None:
        """Raise a clear error for a batch of the wrong rank, channels or size."""
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must be (images, channels, height, width); got shape {tuple(pixel_values.shape)}"
            )
        c, h, w = pixel_values.shape[1:]
        if c != self.in_channels:
            raise ValueError(
                f"images have {c} channel(s) but the encoder expects {self.in_channels}; "
                "convert them (e.g. PIL `image.convert('RGB')`) or use vlfuse.data.transforms.ImageTransform"
            )
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"images are {h}x{w} px but the encoder expects {self.image_size}x{self.image_size}; "
                "resize them with vlfuse.data.transforms.ImageTransform"
            )


class HFTowerWithCLS:
    """Mixin for thin wrappers of a ``transformers`` vision tower (``self.tower``) with square patches of
    ``self.patch_size`` and a CLS vector kept first: ``P = patches + 1``; ``hf_config`` is what checkpoints store.

    Example:
        >>> class MyEncoder(HFTowerWithCLS, VisionEncoder): ...
    """

    tower: Any
    patch_size: int

    def hf_config(self) -> dict[str, Any]:
        """The tower's transformers config as a dict (what ``save_pretrained`` stores)."""
        return self.tower.config.to_dict()

    def num_patches(self, height: int, width: int) -> int:
        return (height // self.patch_size) * (width // self.patch_size) + 1  # + CLS
