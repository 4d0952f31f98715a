"""Vision encoders: pixels -> features. Importing this package registers every built-in encoder."""

from vlfuse.encoders import blip2_vision, hf_vision, idefics_vision, mllama_vision, vit  # noqa: F401  (registration)
from vlfuse.encoders.base import VisionEncoder

__all__ = ["VisionEncoder"]
