"""Linear projection connector (LLaVA-1.0, Liu et al., 2023, arXiv:2304.08485).

Shapes: ``P`` patches per image, ``Dv`` vision width, ``Dt`` LLM width; ``V = P``.
Parameters: ``Dv * Dt + Dt`` (1024 -> 4096: 4,198,400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vlfuse.connectors.base import Connector
from vlfuse.registry import CONNECTORS


@dataclass(frozen=True)
class LinearConfig:
    kind: Literal["linear"] = "linear"
    bias: bool = True


@CONNECTORS.register("linear", LinearConfig)
class LinearConnector(Connector):
    """One ``nn.Linear(Dv, Dt)`` applied to every patch.

    Example:
        >>> LinearConnector(LinearConfig(), in_dim=1024, out_dim=4096)(torch.randn(2, 576, 1024)).shape
        torch.Size([2, 576, 4096])
    """

    def __init__(self, config: LinearConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.proj = nn.Linear(in_dim, out_dim, bias=config.bias)

    def num_tokens(self, num_patches: int) -> int:
        return num_patches

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, P, Dt)``."""
        return self.proj(features)
