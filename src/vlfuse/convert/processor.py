"""A saved ``transformers`` image processor (``preprocessor_config.json`` or ``processor_config.json``) as vlfuse
image settings.

Read: ``image_mean`` / ``image_std`` (identity when ``do_normalize`` is false), the output size (``crop_size``
when ``do_center_crop``, else ``size``), and how the aspect ratio is handled, mapped onto ``ImageConfig.resize``:

- ``do_pad`` (LLaVA's ``LlavaImageProcessor``, Mllama's tiles): the image keeps its aspect ratio and is padded
  -> ``"pad"``;
- ``do_center_crop`` (``CLIPImageProcessor``, the processor of the transformers LLaVA-1.5 releases): short side to
  the size, then a centre crop -> ``"crop"``;
- a fixed ``{"height": s, "width": s}`` without crop (BLIP / BLIP-2, SigLIP, IDEFICS): both sides resized, the
  aspect ratio ignored -> ``"stretch"``.

Any other layout (e.g. ``longest_edge`` resizing) keeps the default. vlfuse's transform always resamples bicubic,
which is ``resample: 3`` (what the CLIP, BLIP and SigLIP processors save).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlfuse.data.transforms import ImageConfig


@dataclass(frozen=True)
class ImageSettings:
    """The parts of a saved image processor that vlfuse keeps."""

    mean: tuple[float, ...] | None  # None: the encoder's default normalisation
    std: tuple[float, ...] | None
    size: int | None  # the square side the processor outputs (None: not a fixed square)
    image: ImageConfig | None  # None: no aspect-ratio rule could be read; keep the default


def _side(size: Any) -> int | None:
    """``224``, ``{"height": 224, "width": 224}`` or ``{"shortest_edge": 224}`` -> 224; other layouts -> None."""
    if isinstance(size, int):
        return size
    if isinstance(size, dict):
        if "height" in size and size.get("height") == size.get("width"):
            return int(size["height"])
        if set(size) == {"shortest_edge"}:
            return int(size["shortest_edge"])
    return None


def image_processor_dict(directory: str | Path) -> dict[str, Any] | None:
    """The saved image processor's settings: ``preprocessor_config.json``, else the ``image_processor`` entry of
    ``processor_config.json`` (where ``transformers`` 5 saves a whole processor); None when neither has one."""
    path = Path(directory) / "preprocessor_config.json"
    if path.is_file():
        return json.loads(path.read_text())
    path = Path(directory) / "processor_config.json"
    nested = json.loads(path.read_text()).get("image_processor") if path.is_file() else None
    return nested if isinstance(nested, dict) else None


def read_image_settings(directory: str | Path) -> ImageSettings:
    """The saved image processor of ``directory`` -> ``ImageSettings`` (all None when there is none)."""
    data = image_processor_dict(directory)
    if data is None:
        return ImageSettings(None, None, None, None)
    mean, std = data.get("image_mean"), data.get("image_std")
    if data.get("do_normalize") is False:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if isinstance(mean, (int, float)):
        mean, std = [float(mean)] * 3, [float(std)] * 3
    crop = bool(data.get("do_center_crop"))
    fixed = data.get("size") or {"height": data.get("image_size"), "width": data.get("image_size")}  # IDEFICS
    size = _side(data.get("crop_size") if crop else fixed)
    if data.get("do_pad"):
        resize = "pad"
    elif crop:
        resize = "crop"
    elif isinstance(fixed, dict) and "height" in fixed and size is not None:
        resize = "stretch"
    else:
        resize = None
    return ImageSettings(tuple(mean) if mean is not None else None, tuple(std) if std is not None else None, size,
                         ImageConfig(resize=resize) if resize else None)
