"""Connectors: vision features -> LLM-width visual tokens. Importing this package registers every connector."""

# each module registers its design on import (the F401 "unused" imports)

from vlfuse.connectors import cabstractor, linear, mlp, none, perceiver, pixel_shuffle, pooling, qformer  # noqa: F401
from vlfuse.connectors.base import Connector

__all__ = ["Connector"]
