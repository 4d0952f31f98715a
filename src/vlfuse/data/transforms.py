"""Image transforms: PIL images, paths or tensors to the normalised ``(C, H, W)`` float tensors an encoder expects.

Two steps, each as the encoder's own processor does it:

* ``to_rgb``: every PIL mode to 8-bit RGB. 16-bit grey (``I;16``, ``I``) is scaled by 255 / 65535 instead of
  clipped; float (``F``) is read as [0, 1] when it fits there, else as 0..255; alpha (``LA``, ``RGBA``, ``P`` with a
  transparent colour, ...) is composited on white, as ``transformers``' ``convert_to_rgb`` does.
* ``ImageConfig.resize``: how an image of any aspect ratio becomes ``size x size``. ``pad`` is LLaVA-1.5's
  ``expand2square`` (https://github.com/haotian-liu/LLaVA, ``mm_utils.py``): centre the image on a square of the
  mean colour (``int(mean * 255)``), then resize. ``crop`` is ``CLIPImageProcessor``: resize the short side to
  ``shortest_edge`` (default ``size``), centre-crop ``size``. ``stretch`` resizes both sides, ignoring the aspect
  ratio. Every resize uses ``ImageConfig.resample`` (PIL's filter; bicubic unless the saved processor says
  otherwise, e.g. SigLIP's bilinear); 8-bit pixels are scaled by ``rescale`` (1 / 255) before normalising.

Shapes: ``C`` channels, ``H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from PIL import Image

Resize = Literal["pad", "crop", "stretch"]
RESIZE_MODES: tuple[str, ...] = get_args(Resize)
Resample = Literal["nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"]  # in the order of PIL's codes 0..5
RESAMPLE_FILTERS: tuple[str, ...] = get_args(Resample)
_TENSOR_MODES = {"nearest": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic"}  # PIL name -> torch mode
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


@dataclass(frozen=True)
class ImageConfig:
    """How an image of any aspect ratio becomes the encoder's square input (saved with the model)."""

    # pad: to a square with the mean colour, then resize (LLaVA-1.5); crop: short side to size, centre crop
    # (CLIP's processor); stretch: resize both sides, ignoring the aspect ratio
    resize: Resize = "pad"
    resample: Resample = "bicubic"  # the filter of every resize (a transformers processor's `resample`)
    shortest_edge: int | None = None  # pad / crop: the short side before the centre crop (None: the input size)
    rescale: float = 1 / 255  # 8-bit pixels -> [0, 1] (a transformers processor's `rescale_factor`)

    def __post_init__(self) -> None:
        if self.shortest_edge is not None and self.shortest_edge < 1:
            raise ValueError(f"image.shortest_edge={self.shortest_edge}: need a side >= 1 px, or null for the "
                             "encoder's input size")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, for every mode PIL opens (see the module docstring for 16-bit, float and alpha)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "I" or mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.float64) / 257.0  # 0..65535 -> 0..255 (65535 = 255 * 257)
        return Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        grey = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if grey.size and grey.min() >= 0.0 and grey.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.round(grey * scale), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")  # PIL has no La -> RGBA
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def crop_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(w, h)`` after resizing the short side to ``size`` (the long side truncated, as ``transformers`` does)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


class ImageTransform:
    """Resize to ``size x size`` by ``resize``, scale to [0, 1], normalise with ``mean``/``std``.

    Args:
        size: the encoder's input side.
        mean, std: per-channel normalisation (the encoder's); ``pad`` fills with ``mean``.
        channels: 3 (RGB) or 1 (grey).
        resize: ``pad`` | ``crop`` | ``stretch`` (``ImageConfig.resize``).
        resample, shortest_edge, rescale: as in ``ImageConfig``.

    Example:
        >>> t = ImageTransform(32, (0.5,) * 3, (0.5,) * 3, resize="crop")
        >>> t(Image.new("RGB", (64, 48))).shape
        torch.Size([3, 32, 32])
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], channels: int = 3,
                 resize: str = "pad", resample: str = "bicubic", shortest_edge: int | None = None,
                 rescale: float = 1 / 255) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"image resize mode {resize!r} is not one of {', '.join(RESIZE_MODES)}; "
                             "set model.image.resize to one of them")
        if resample not in RESAMPLE_FILTERS:
            raise ValueError(f"image resample filter {resample!r} is not one of {', '.join(RESAMPLE_FILTERS)}; "
                             "set model.image.resample to one of them")
        if shortest_edge is not None and shortest_edge < size and resize != "stretch":
            raise ValueError(f"image.shortest_edge={shortest_edge} is below the {size} px crop; the crop would run "
                             f"off the image; use shortest_edge >= {size} (or null)")
        self.size, self.channels, self.resize = size, channels, resize
        self.resample, self.rescale = resample, rescale
        self.edge = shortest_edge or size  # short side before the centre crop (pad, crop)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.fill = tuple(int(m * 255) for m in mean)  # LLaVA's background: the mean colour, truncated to 0..255

    def __call__(self, image: Any) -> torch.Tensor:
        """A PIL image, a path, or a ``(C, H, W)`` tensor in [0, 1] -> ``(C, size, size)``."""
        if isinstance(image, torch.Tensor):
            return self._tensor(image)
        if not isinstance(image, Image.Image):
            from vlfuse.data.llava_format import load_image

            image = load_image(image)
        if self.channels in (1, 3):
            image = to_rgb(image).convert("L") if self.channels == 1 else to_rgb(image)
        image = self._square(image)
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())  # (H, W, C) or (H, W)
        if x.ndim == 2:
            x = x.unsqueeze(-1)  # (H, W, 1)
        return self._normalise(x.permute(2, 0, 1).float() * self.rescale)  # (C, size, size)

    def _square(self, image: Image.Image) -> Image.Image:
        s, (w, h) = self.size, image.size
        if self.resize == "pad" and w != h:
            side = max(w, h)
            fill = self.fill[0] if image.mode in ("L", "I", "F") else self.fill
            square = Image.new(image.mode, (side, side), fill)
            square.paste(image, ((side - w) // 2, (side - h) // 2))
            image, w, h = square, side, side
        filt = Image.Resampling[self.resample.upper()]
        if self.resize == "stretch":
            return image.resize((s, s), filt) if image.size != (s, s) else image
        new = crop_size(w, h, self.edge)  # short side to the edge, then the centre crop
        if new != (w, h):
            image = image.resize(new, filt)
        left, top = (new[0] - s) // 2, (new[1] - s) // 2
        return image.crop((left, top, left + s, top + s)) if new != (s, s) else image

    def _tensor(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[0] != self.channels:
            raise ValueError(
                f"image tensor has shape {tuple(x.shape)}; expected ({self.channels}, H, W) with values in [0, 1] "
                f"(convert grayscale/RGBA images to {self.channels} channels first)"
            )
        if self.resample not in _TENSOR_MODES:
            raise ValueError(f"image.resample={self.resample!r} has no torch equivalent for tensor images; give PIL "
                             f"images (or paths), or use one of {', '.join(_TENSOR_MODES)}")
        x, s, mode = x.float(), self.size, _TENSOR_MODES[self.resample]
        h, w = x.shape[1:]
        if self.resize == "pad" and h != w:
            side = max(h, w)
            square = self.mean.expand(self.channels, side, side).clone()  # (C, side, side) of the mean colour
            top, left = (side - h) // 2, (side - w) // 2
            square[:, top:top + h, left:left + w] = x
            x, h, w = square, side, side
        if self.resize == "stretch":
            return self._normalise(_interpolate(x, s, s, mode))  # (C, size, size)
        nw, nh = crop_size(w, h, self.edge)
        x = _interpolate(x, nh, nw, mode)  # (C, nh, nw), short side = edge
        top, left = (nh - s) // 2, (nw - s) // 2
        return self._normalise(x[:, top:top + s, left:left + s])  # (C, size, size)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (C, H, W)


def image_transform(encoder: Any, image: ImageConfig) -> ImageTransform:
    """The transform for ``encoder`` (its size, normalisation and channels) under the model's ``image`` config."""
    return ImageTransform(encoder.image_size, encoder.image_mean, encoder.image_std, encoder.in_channels,
                          image.resize, image.resample, image.shortest_edge, image.rescale)


def _interpolate(x: torch.Tensor, h: int, w: int, mode: str = "bicubic") -> torch.Tensor:
    """``(C, H, W) -> (C, h, w)``, antialiased when it filters (as PIL does), kept in [0, 1]."""
    if x.shape[1:] == (h, w):
        return x
    smooth = mode in ("bilinear", "bicubic")
    out = torch.nn.functional.interpolate(x[None], size=(h, w), mode=mode, antialias=smooth)[0]
    return out.clamp(0, 1)
