"""Average-pooling connector (MM1, McKinney et al., 2024, arXiv:2403.09611): pool the patch grid to ``k x k``, project.

MM1 found the number of visual tokens matters more than the connector type; this connector sets that number
directly. The patch features are laid back on their ``g x g`` grid, averaged to ``grid x grid`` cells with
``adaptive_avg_pool2d`` (``grid = 1`` is one mean-pooled token per image), then projected by an MLP
(``depth`` linear layers, ``activation`` between, as the ``mlp`` connector).
Shapes: ``P = g * g`` patches per image, ``Dv`` vision width, ``Dt`` LLM width, ``V = grid * grid``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from vlfuse.connectors.base import Connector
from vlfuse.connectors.mlp import MLPConfig, MLPConnector
from vlfuse.registry import CONNECTORS


@dataclass(frozen=True)
class AvgPoolConfig:
    kind: Literal["avgpool"] = "avgpool"
    grid: int = 2  # output side: V = grid * grid tokens per image
    depth: int = 2  # linear layers of the projection after pooling
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.grid < 1:
            raise ValueError(f"avgpool grid={self.grid} must be >= 1 (V = grid * grid tokens per image)")


@CONNECTORS.register("avgpool", AvgPoolConfig)
class AvgPoolConnector(Connector):
    """Average-pool a square patch grid to ``grid x grid`` tokens, then project to the LLM width.

    Example:
        >>> c = AvgPoolConnector(AvgPoolConfig(grid=2), in_dim=64, out_dim=128)
        >>> c(torch.randn(3, 64, 64)).shape  # an 8 x 8 patch grid -> 2 x 2 tokens
        torch.Size([3, 4, 128])
    """

    def __init__(self, config: AvgPoolConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.config, self.in_dim, self.out_dim = config, in_dim, out_dim
        self.proj = MLPConnector(MLPConfig(depth=config.depth, activation=config.activation), in_dim, out_dim)

    def num_tokens(self, num_patches: int) -> int:
        side = self._side(num_patches)
        if self.config.grid > side:
            raise ValueError(f"avgpool grid={self.config.grid} is finer than the {side}x{side} patch grid; "
                             f"use grid <= {side}")
        return self.config.grid**2

    @staticmethod
    def _side(num_patches: int) -> int:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(f"avgpool needs a square patch grid, got {num_patches} features per image "
                             "(drop the CLS token: keep_cls / feature handling of the encoder)")
        return side

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, grid*grid, Dt)``."""
        n, p, d = features.shape
        side = self._side(p)
        x = features.transpose(1, 2).reshape(n, d, side, side)  # (B*N, Dv, g, g)
        x = F.adaptive_avg_pool2d(x, self.config.grid)  # (B*N, Dv, grid, grid)
        return self.proj(x.flatten(2).transpose(1, 2))  # (B*N, V, Dt)
