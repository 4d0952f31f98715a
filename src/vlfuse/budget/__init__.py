"""Budget calculator: visual tokens per image for released model families, and the cost of each fusion design.

``count_tokens("qwen2-vl", [(4000, 3000)])`` counts with the released checkpoint's settings;
``estimate_cost`` (``budget/cost.py``) gives parameters, FLOPs and KV-cache bytes per design.
Shapes and units: ``W H`` pixels, ``V`` tokens per image, ``T`` text tokens, ``C`` context length.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlfuse.budget.cost import DESIGNS, estimate_cost
from vlfuse.budget.families import FAMILIES, Family, ImageTokens
from vlfuse.budget.settings import Resolved, resolve


def count_tokens(model: str, sizes: Sequence[tuple[int, int]], **resolve_kwargs) -> list[ImageTokens]:
    """Tokens of each ``(W, H)`` image in one prompt for a family name or a local model folder.

    Example:
        >>> count_tokens("qwen2-vl", [(4000, 3000)])[0].tokens
        15303
    """
    r = resolve(model, **resolve_kwargs)
    return [r.family.count(w, h, r.settings, images_in_prompt=len(sizes)) for w, h in sizes]


def list_families() -> list[str]:
    """Registered family names, sorted."""
    return FAMILIES.names()


__all__ = ["DESIGNS", "FAMILIES", "Family", "ImageTokens", "Resolved", "count_tokens", "estimate_cost",
           "list_families", "resolve"]
