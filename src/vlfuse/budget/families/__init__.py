"""Model families for ``vlfuse tokens``. Importing this package registers every family in ``FAMILIES``.

Adding a family = one registered class (its settings dataclass + ``count``) in a module here, plus its import.
"""

# each module registers its families on import (the F401 "unused" imports)

from vlfuse.budget.families import fixed, idefics, llava, native, qwen_vl, tiled  # noqa: F401
from vlfuse.budget.families.base import FAMILIES, Family, ImageTokens

__all__ = ["FAMILIES", "Family", "ImageTokens"]
