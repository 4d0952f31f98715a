"""Pixel-shuffle connector (Idefics3, Laurençon et al., 2024, arXiv:2408.12637; SmolVLM, arXiv:2504.05299).

Space-to-depth on the square patch grid: every ``r x r`` block of neighbouring patches is concatenated into one
token (``P -> P / r^2`` tokens, ``Dv -> Dv * r^2`` channels), so nothing is averaged away, then a projection to the
LLM width. With ``depth=1, bias=False`` the weights are ``transformers.Idefics3Connector``'s (``modality_projection.
proj``); ``depth=2`` is an MLP as the ``mlp`` connector. The channel order inside a token is Idefics3's: row offset
in the block, then column offset, then channel (parity in ``tests/parity/test_idefics3_connector.py``).
The grid side must be divisible by ``r``: Idefics3 does not pad, and neither do we; a clear error says so.
Shapes: ``P = g * g`` patches per image, ``r`` ratio, ``Dv`` vision width, ``Dt`` LLM width, ``V = P / r^2``.
Parameters for depth 1 without bias: ``Dv * r^2 * Dt`` (``Idefics3Config`` defaults, r=2: 1152 * 4 * 4096 = 18,874,368).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from vlfuse.connectors.base import Connector
from vlfuse.connectors.mlp import MLPConfig, MLPConnector
from vlfuse.registry import CONNECTORS


@dataclass(frozen=True)
class PixelShuffleConfig:
    kind: Literal["pixelshuffle"] = "pixelshuffle"
    ratio: int = 2  # r: side of the patch block merged into one token (Idefics3: 2 or 3, SmolVLM: 3 or 4)
    depth: int = 1  # linear layers after the shuffle: 1 as Idefics3, 2 for a GELU MLP
    activation: str = "gelu"  # between the layers when depth > 1
    bias: bool = False  # Idefics3's projection has no bias

    def __post_init__(self) -> None:
        if self.ratio < 1:
            raise ValueError(f"pixelshuffle ratio={self.ratio} must be >= 1")


def pixel_shuffle(x: torch.Tensor, ratio: int) -> torch.Tensor:
    """Space-to-depth: ``(B*N, g*g, Dv) -> (B*N, (g/r)^2, r*r*Dv)``, tokens in row-major block order.

    Token ``(I, J)`` is ``concat_a concat_c x[I*r + a, J*r + c]``, the order ``Idefics3Connector.pixel_shuffle``
    produces with its two transposes.
    """
    n, p, d = x.shape
    side = _side(p, ratio)
    s = side // ratio
    x = x.view(n, s, ratio, s, ratio, d)  # (B*N, I, a, J, c, Dv)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B*N, I, J, a, c, Dv)
    return x.reshape(n, s * s, ratio * ratio * d)  # (B*N, V, r*r*Dv)


def _side(num_patches: int, ratio: int) -> int:
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"pixelshuffle needs a square patch grid, got {num_patches} features per image "
                         "(drop the CLS token: keep_cls / feature handling of the encoder)")
    if side % ratio:
        divisors = [r for r in range(1, side + 1) if side % r == 0]
        raise ValueError(f"pixelshuffle ratio={ratio} does not divide the {side}x{side} patch grid; use a ratio in "
                         f"{divisors} or an image size / patch size whose grid side is a multiple of {ratio} "
                         "(the grid is not padded, as in Idefics3)")
    return side


@CONNECTORS.register("pixelshuffle", PixelShuffleConfig)
class PixelShuffleConnector(Connector):
    """Merge each ``r x r`` block of patches into one token, then project to the LLM width.

    Example:
        >>> c = PixelShuffleConnector(PixelShuffleConfig(ratio=2), in_dim=64, out_dim=128)
        >>> c(torch.randn(3, 64, 64)).shape  # an 8 x 8 patch grid -> 4 x 4 tokens of 4 * 64 channels, projected
        torch.Size([3, 16, 128])
    """

    def __init__(self, config: PixelShuffleConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.config, self.in_dim, self.out_dim = config, in_dim, out_dim
        mlp = MLPConfig(depth=config.depth, activation=config.activation, bias=config.bias)
        self.proj = MLPConnector(mlp, in_dim * config.ratio**2, out_dim)

    def num_tokens(self, num_patches: int) -> int:
        return (_side(num_patches, self.config.ratio) // self.config.ratio) ** 2

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, P / r^2, Dt)``."""
        return self.proj(pixel_shuffle(features, self.config.ratio))  # (B*N, V, Dt)
