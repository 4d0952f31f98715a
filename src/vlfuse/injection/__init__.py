"""Injections: how visual tokens reach the LLM. Importing this package registers every injection."""

from vlfuse.injection import concat, cross_attention, encoder_prefix  # noqa: F401  (registration)
from vlfuse.injection.base import Injector

__all__ = ["Injector"]
