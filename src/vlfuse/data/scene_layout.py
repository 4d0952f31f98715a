"""Pixel geometry of the built-in scenes: object sides, the cell grid, the word strip and the names of grid cells.

One ``Layout`` per ``(image_size, with_word)``: objects live in distinct cells of a coarse grid (the large side plus
a 1-pixel margin each side), centred above a strip that holds the word, when there is one. ``scenes`` places and
draws objects with it; ``cell_name`` turns a cell into the words a ``position`` answer uses.
Shapes: each image is ``(H, W) = (image_size, image_size)`` RGB; a cell is ``(row, col)`` in the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from PIL import ImageFont

ROW_NAMES, COL_NAMES = ("top", "middle", "bottom"), ("left", "center", "right")  # a grid has 2 or 3 cells a side


@dataclass(frozen=True)
class Layout:
    """Pixel geometry for one image size: object sides, the cell grid and the word strip (0 rows when no word)."""

    small: int  # side of a small object
    large: int  # side of a large object
    cell: int  # grid pitch: large side + a 1-pixel margin each side
    cols: int
    rows: int
    origin: tuple[int, int]  # (x, y) of the grid's top-left pixel; the grid is centred above the strip
    font_size: int
    strip: int  # rows reserved for the word at the bottom
    cells: int  # rows * cols


@lru_cache(maxsize=32)
def layout(image_size: int, with_word: bool) -> Layout:
    """The grid for ``image_size`` px, leaving room for a word strip when ``with_word``."""
    small = max(4, round(image_size / 6))
    large = max(small + 2, image_size // 4)
    cell = large + 2
    font_size = max(7, round(image_size * 10 / 32))  # 10 at 32 px: 8-pixel capitals, the smallest that stay legible
    ink = font(font_size).getbbox("ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # (left, top, right, bottom) of all capitals
    strip = int(ink[3] - ink[1]) + 2 if with_word else 0  # the capitals plus a 1-pixel margin above and below
    rows, cols = (image_size - strip) // cell, image_size // cell
    origin = ((image_size - cols * cell) // 2, (image_size - strip - rows * cell) // 2)
    return Layout(small, large, cell, cols, rows, origin, font_size, strip, rows * cols)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The word's font at ``size`` px: Pillow's bundled FreeType font, so no system fonts are needed."""
    return ImageFont.load_default(size=size)


def word_width(word: str, font_size: int) -> int:
    """Pixels of ink ``word`` takes, drawn upper-case."""
    left, _, right, _ = font(font_size).getbbox(word.upper())
    return int(right - left)


def cell_name(cell: tuple[int, int], lay: Layout) -> str:
    """``"top left"`` ... ``"bottom right"``: a grid of 2 cells a side uses the outer names only."""
    rows, cols = (ROW_NAMES[::2] if lay.rows == 2 else ROW_NAMES), (COL_NAMES[::2] if lay.cols == 2 else COL_NAMES)
    return f"{rows[cell[0]]} {cols[cell[1]]}"
