"""The slot every model family fills: an image size in, the tokens that image puts in the LLM context out.

A family is one registered class (``@FAMILIES.register("qwen2-vl", QwenVLSettings)``) with a frozen settings
dataclass whose defaults are the values published with a released checkpoint (its ``preprocessor_config.json``,
``processor_config.json`` and ``config.json``), not the processor class defaults, which often differ
(Qwen2-VL: ``max_pixels`` 12845056 released vs 1003520 class default). ``class_defaults`` holds those
transformers class defaults so ``vlfuse tokens --processor-defaults`` can show the difference.

Shapes and units: ``W H`` image width and height in pixels; ``p`` patch side in pixels; ``V`` tokens one image
puts in the LLM context; ``T`` text tokens; ``C`` context length in tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from vlfuse.registry import Registry

FAMILIES: Registry = Registry("model family")
HFKeys = dict[str, tuple[tuple[str, str], ...]]  # setting -> ((file, "dotted.key"), ...) tried in order


@dataclass(frozen=True)
class ImageTokens:
    """What one image (or one video) costs in the LLM context, and why.

    ``tokens = image_tokens + special_tokens + row_break_tokens`` always holds.
    """

    tokens: int  # V: every position the image occupies in the LLM sequence
    image_tokens: int  # positions that carry visual features (soft tokens, query outputs)
    special_tokens: int = 0  # delimiters and tags: <img>, <fake_token_around_image>, <row_1_col_1>, ...
    row_break_tokens: int = 0  # newline / [IMG_BREAK] / learned image_newline positions between rows
    tiles: int = 0  # crops encoded besides the overview image; 0 = one view only
    thumbnail: bool = False  # an overview (global) image is encoded as well as the tiles
    resized: tuple[int, int] | None = None  # (W, H) the image is resized to, or the tiling canvas
    grid: tuple[int, int] | None = None  # (cols, rows) of tiles, or of LLM tokens for native-resolution families
    frames: int = 1  # video frames these tokens cover
    cross_attention_tokens: int = 0  # vision positions read by cross-attention layers (not in the context)
    cross_attention_kv: int = 0  # cross-attention K/V length per image, padding tiles included
    notes: tuple[str, ...] = ()  # caveats specific to this image

    def __post_init__(self) -> None:
        assert self.tokens == self.image_tokens + self.special_tokens + self.row_break_tokens, self

    def scaled(self, frames: int, note: str) -> ImageTokens:
        """``frames`` independent copies of this image (the fallback video rule)."""
        return replace(
            self,
            tokens=self.tokens * frames,
            image_tokens=self.image_tokens * frames,
            special_tokens=self.special_tokens * frames,
            row_break_tokens=self.row_break_tokens * frames,
            cross_attention_tokens=self.cross_attention_tokens * frames,
            cross_attention_kv=self.cross_attention_kv * frames,
            frames=frames,
            notes=(*self.notes, note),
        )


class Family(ABC):
    """A released model family's token rule. Subclasses set the class variables and implement ``count``.

    ``hf_keys`` maps a settings field to the places a local model folder may hold it, tried in order, as
    ``(file, "dotted.key")``; ``vlfuse tokens --model PATH`` reads them (see ``budget/hf_files.py``).
    """

    checkpoint: ClassVar[str]  # Hub id of the released checkpoint the defaults copy
    processor: ClassVar[str]  # transformers classes whose logic ``count`` mirrors
    model_types: ClassVar[tuple[str, ...]] = ()  # config.json ``model_type`` (or "type/vision_type") values
    class_defaults: ClassVar[dict[str, Any]] = {}  # transformers class defaults that differ from the release
    unreleased: ClassVar[tuple[str, ...]] = ()  # settings the release files leave to the processor's defaults
    hf_keys: ClassVar[HFKeys] = {}

    @abstractmethod
    def count(self, width: int, height: int, s: Any, *, images_in_prompt: int = 1) -> ImageTokens:
        """Tokens of one ``width x height`` image under settings ``s``; ``images_in_prompt`` for families whose
        rule changes when a prompt holds several images (LLaVA-OneVision)."""

    def count_video(self, width: int, height: int, frames: int, s: Any) -> ImageTokens:
        """Tokens of ``frames`` frames of ``width x height``; by default every frame is a separate image."""
        one = self.count(width, height, s)
        return one.scaled(frames, f"{type(self).__name__} has no video rule here: {frames} frames x one image")


CONTEXT_KEYS: tuple[tuple[str, str], ...] = (
    ("config.json", "text_config.max_position_embeddings"),
    ("config.json", "max_position_embeddings"),
)


def check_size(width: int, height: int) -> None:
    """Reject sizes no processor accepts, naming the value and the fix."""
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height} must be at least 1x1 pixels; pass --size WxH with W, H >= 1")
