"""A saved ``transformers`` image processor as vlfuse image settings.

Where: ``processor_config.json``'s ``image_processor`` entry (what ``ProcessorMixin.save_pretrained`` writes since
transformers 5), else ``preprocessor_config.json`` (the image processor saved alone, and every older release);
transformers' ``AutoImageProcessor`` looks in the same order.

Read: ``image_mean`` / ``image_std`` (identity when ``do_normalize`` is false), the output size (``crop_size``
when ``do_center_crop``, else ``size``), ``resample`` (PIL's filter code), ``rescale_factor`` (1 when
``do_rescale`` is false), ``size.shortest_edge`` before a crop, and how the aspect ratio is handled, mapped onto
``ImageConfig.resize``:

- ``do_pad`` (LLaVA's ``LlavaImageProcessor``, Mllama's tiles): the image keeps its aspect ratio and is padded
  -> ``"pad"``;
- ``do_center_crop`` (``CLIPImageProcessor``, the processor of the transformers LLaVA-1.5 releases): short side to
  ``shortest_edge``, then a centre crop -> ``"crop"``;
- a fixed ``{"height": s, "width": s}`` without crop (BLIP / BLIP-2, SigLIP, IDEFICS): both sides resized, the
  aspect ratio ignored -> ``"stretch"``.

Any other layout (e.g. ``longest_edge`` resizing) keeps the default. ``do_resize: false`` is refused: vlfuse
always resizes to the tower's input size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlfuse.data.transforms import RESAMPLE_FILTERS, ImageConfig


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


def image_processor_dict(directory: str | Path) -> tuple[dict[str, Any] | None, str]:
    """The saved image processor's settings and the file they came from (``None, ""`` when there are none)."""
    nested = Path(directory) / "processor_config.json"
    if nested.is_file():
        data = json.loads(nested.read_text()).get("image_processor")
        if isinstance(data, dict):
            return data, f"{nested.name} (image_processor)"
    alone = Path(directory) / "preprocessor_config.json"
    if alone.is_file():
        return json.loads(alone.read_text()), alone.name
    return None, ""


def _resample(data: dict[str, Any], where: str) -> str:
    """PIL's filter code (``3``) or name -> vlfuse's name (``"bicubic"``); absent: bicubic."""
    code = data.get("resample", 3)
    if isinstance(code, int) and 0 <= code < len(RESAMPLE_FILTERS):
        return RESAMPLE_FILTERS[code]
    if isinstance(code, str) and code.lower() in RESAMPLE_FILTERS:
        return code.lower()
    raise ValueError(f"{where}: resample={code!r} is not a PIL filter (0..5 or one of {', '.join(RESAMPLE_FILTERS)});"
                     " save the image processor that belongs to this model")


def _resize_mode(data: dict[str, Any], fixed: Any, size: int | None) -> str | None:
    if data.get("do_pad"):
        return "pad"
    if data.get("do_center_crop"):
        return "crop"
    if isinstance(fixed, dict) and "height" in fixed and size is not None:
        return "stretch"
    return None


def read_image_settings(directory: str | Path) -> ImageSettings:
    """The image processor saved in ``directory`` -> ``ImageSettings`` (all None when there is none)."""
    data, where = image_processor_dict(directory)
    if data is None:
        return ImageSettings(None, None, None, None)
    if data.get("do_resize") is False:
        raise ValueError(f"{where}: do_resize is false, so its images keep their own size; vlfuse resizes every "
                         "image to the vision tower's input size; save a processor with do_resize true")
    mean, std = data.get("image_mean"), data.get("image_std")
    if data.get("do_normalize") is False:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if isinstance(mean, (int, float)):
        mean, std = [float(mean)] * 3, [float(std)] * 3
    crop = bool(data.get("do_center_crop"))
    fixed = data.get("size") or {"height": data.get("image_size"), "width": data.get("image_size")}  # IDEFICS
    size = _side(data.get("crop_size") if crop else fixed)
    resize = _resize_mode(data, fixed, size)
    image = None
    if resize is not None:
        edge = fixed.get("shortest_edge") if isinstance(fixed, dict) and resize != "stretch" else None
        rescale = float(data.get("rescale_factor", 1 / 255)) if data.get("do_rescale", True) else 1.0
        image = ImageConfig(resize=resize, resample=_resample(data, where),
                            shortest_edge=int(edge) if edge is not None and edge != size else None, rescale=rescale)
    return ImageSettings(tuple(mean) if mean is not None else None, tuple(std) if std is not None else None, size,
                         image)
