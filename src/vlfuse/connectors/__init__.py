"""Connectors: vision features -> LLM-width visual tokens. Importing this package registers every connector."""

from vlfuse.connectors import linear, mlp, none, pooling  # noqa: F401  (registration)
from vlfuse.connectors.base import Connector

__all__ = ["Connector"]
