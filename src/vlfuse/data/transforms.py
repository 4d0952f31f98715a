"""Image transforms: PIL images, paths or tensors to the normalised ``(C, H, W)`` float tensors an encoder expects.

Shapes: ``C`` channels, ``H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class ImageConfig:
    """How an image of any aspect ratio becomes the encoder's square input (saved with the model)."""

    # pad: to a square with the mean colour, then resize (LLaVA-1.5); crop: short side to size, centre crop
    # (CLIP's processor); stretch: resize both sides, ignoring the aspect ratio
    resize: Literal["pad", "crop", "stretch"] = "pad"


class ImageTransform:
    """Resize to ``size x size`` (bicubic), scale to [0, 1], normalise with ``mean``/``std``.

    Example:
        >>> t = ImageTransform(32, (0.5,) * 3, (0.5,) * 3)
        >>> t(Image.new("RGB", (64, 48))).shape
        torch.Size([3, 32, 32])
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], channels: int = 3) -> None:
        self.size, self.channels = size, channels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Any) -> torch.Tensor:
        """A PIL image, a path, or a ``(C, H, W)`` tensor in [0, 1] -> ``(C, size, size)``."""
        if isinstance(image, torch.Tensor):
            return self._tensor(image)
        if not isinstance(image, Image.Image):
            from vlfuse.data.llava_format import load_image

            image = load_image(image)
        image = image.convert("RGB") if self.channels == 3 else image
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())  # (H, W, C)
        if x.ndim == 2:
            x = x.unsqueeze(-1)
        return self._normalise(x.permute(2, 0, 1).float() / 255.0)

    def _tensor(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[0] != self.channels:
            raise ValueError(
                f"image tensor has shape {tuple(x.shape)}; expected ({self.channels}, H, W) with values in [0, 1] "
                f"(convert grayscale/RGBA images to {self.channels} channels first)"
            )
        if x.shape[1:] != (self.size, self.size):
            x = torch.nn.functional.interpolate(x[None].float(), size=(self.size, self.size), mode="bicubic")[0]
        return self._normalise(x.float())

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (C, H, W)
