"""Token budget of a prompt: tokens per image, the total with text, the share of the context, how many fit.

Two ways to count an image: a registered model family (``budget/families``), or the generic ViT rule
``V = views * floor(W / p) * floor(H / p)`` with ``views = tiles + thumbnail`` (one view without tiles), the
count of a ViT that encodes each ``W x H`` view into non-overlapping ``p x p`` patches (Dosovitskiy et al., 2021,
arXiv:2010.11929) and hands every patch to the LLM, as LLaVA does (224 / 336 / 448 / 672 px at p = 14 ->
256 / 576 / 1024 / 2304 tokens).
Shapes and units: ``W H`` pixels, ``p`` patch side in pixels, ``V`` tokens per image in the LLM context,
``T`` text tokens, ``C`` context length in tokens; shares are fractions of ``C``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlfuse.budget.families import ImageTokens
from vlfuse.budget.settings import Resolved


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)``; ``"336"`` -> ``(336, 336)``."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        w, h = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        w = h = -1
    if len(parts) > 2 or w < 1 or h < 1:
        raise ValueError(f"--size {text!r}: expected WxH in pixels like 640x480, or one number for a square (336)")
    return w, h


def image_size(path: str) -> tuple[int, int]:
    """``(W, H)`` of an image file, read from its header with PIL."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--image {path}: no such file; check the path, or give the size with --size WxH")
    try:
        with Image.open(p) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"--image {path}: PIL cannot read it as an image ({e}); pass a PNG/JPEG/WebP file or "
                         "give its size with --size WxH") from e


def generic_count(width: int, height: int, patch: int, tiles: int = 0, thumbnail: bool = False) -> ImageTokens:
    """``views * floor(W / p) * floor(H / p)`` tokens; each tile and the thumbnail is a ``W x H`` view."""
    if patch < 1:
        raise ValueError(f"--patch {patch}: the patch side must be at least 1 pixel (e.g. 14 for ViT-L/14)")
    if tiles < 0:
        raise ValueError(f"--tiles {tiles}: the number of tiles must be >= 0")
    if width < patch or height < patch:
        raise ValueError(f"a {width}x{height} view holds no whole {patch} px patch; use a size >= {patch} "
                         "or a smaller --patch")
    per_view = (width // patch) * (height // patch)
    views = tiles + (1 if thumbnail or tiles == 0 else 0)
    return ImageTokens(views * per_view, views * per_view, tiles=tiles, thumbnail=thumbnail and tiles > 0,
                       resized=(width, height), grid=(width // patch, height // patch))


def count_family(r: Resolved, sizes: Sequence[tuple[int, int]], frames: int = 1) -> list[ImageTokens]:
    """Tokens of each ``(W, H)`` under a resolved family; ``frames > 1`` counts each size as a video."""
    if frames < 1:
        raise ValueError(f"--frames {frames}: a video needs at least 1 frame")
    if frames > 1:
        return [r.family.count_video(w, h, frames, r.settings) for w, h in sizes]
    return [r.family.count(w, h, r.settings, images_in_prompt=len(sizes)) for w, h in sizes]


def _fit(room: int, tokens: int) -> int | None:
    return max(room, 0) // tokens if tokens > 0 else None


def budget(sizes: Sequence[tuple[int, int]], counts: Sequence[ImageTokens], text_tokens: int, context: int,
           settings: dict[str, Any], model: str) -> dict[str, Any]:
    """The ``vlfuse tokens --json`` object: per-image breakdown, totals, context share, images that fit.

    Top-level ``images_that_fit`` is how many images of the costliest size fit beside the text.
    """
    if text_tokens < 0:
        raise ValueError(f"--text-tokens {text_tokens}: must be >= 0")
    if context < 1:
        raise ValueError(f"--context {context}: the context length must be at least 1 token")
    room = context - text_tokens
    images = []
    for (w, h), c in zip(sizes, counts):
        d = {k: v for k, v in asdict(c).items() if k != "notes"}
        d = {"size": [w, h], **d, "resized": list(c.resized) if c.resized else None,
             "grid": list(c.grid) if c.grid else None, "context_share": c.tokens / context,
             "images_that_fit": _fit(room, c.tokens), "notes": list(c.notes)}
        if not c.cross_attention_kv:
            d.pop("cross_attention_tokens"), d.pop("cross_attention_kv")
        images.append(d)
    total = text_tokens + sum(c.tokens for c in counts)
    worst = max((c.tokens for c in counts), default=0)
    return {"model": model, "images": images, "text_tokens": text_tokens, "total": total, "context": context,
            "context_share": total / context, "fits": total <= context, "images_that_fit": _fit(room, worst),
            "settings": settings}
