"""MLP connector (LLaVA-1.5, Liu et al., 2023, arXiv:2310.03744): ``depth`` linear layers with an activation between.

LLaVA-1.5 uses ``depth=2`` with GELU: ``Linear(Dv, Dt) -> GELU -> Linear(Dt, Dt)``; the parameter names
``linear_1``/``linear_2`` follow ``transformers.LlavaMultiModalProjector`` so its weights load unchanged.
Shapes: ``P`` patches per image, ``Dv`` vision width, ``Dt`` LLM width; ``V = P``.
Parameters for depth 2: ``Dv*Dt + Dt + Dt*Dt + Dt`` (1024 -> 4096 -> 4096: 20,979,712).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from transformers.activations import ACT2FN

from vlfuse.connectors.base import Connector
from vlfuse.registry import CONNECTORS


@dataclass(frozen=True)
class MLPConfig:
    kind: Literal["mlp"] = "mlp"
    depth: int = 2  # number of linear layers (>= 1)
    hidden_dim: int | None = None  # width of the hidden layers; None: the LLM width (as LLaVA-1.5)
    activation: str = "gelu"  # any name in transformers' ACT2FN: gelu, relu, silu, quick_gelu, ...
    bias: bool = True

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"mlp depth={self.depth} must be >= 1")
        if self.activation not in ACT2FN:
            raise ValueError(f"unknown activation {self.activation!r}; choices: {', '.join(sorted(ACT2FN))}")


@CONNECTORS.register("mlp", MLPConfig)
class MLPConnector(Connector):
    """``depth`` linear layers, ``linear_1 .. linear_depth``, with ``act`` between them.

    Example:
        >>> m = MLPConnector(MLPConfig(), in_dim=1024, out_dim=4096)
        >>> sum(p.numel() for p in m.parameters())
        20979712
    """

    def __init__(self, config: MLPConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.depth = in_dim, out_dim, config.depth
        hidden = config.hidden_dim or out_dim
        dims = [in_dim] + [hidden] * (config.depth - 1) + [out_dim]
        for i in range(config.depth):
            self.add_module(f"linear_{i + 1}", nn.Linear(dims[i], dims[i + 1], bias=config.bias))
        self.act = ACT2FN[config.activation]

    def num_tokens(self, num_patches: int) -> int:
        return num_patches

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, P, Dt)``."""
        x = self.linear_1(features)  # (B*N, P, hidden)
        for i in range(2, self.depth + 1):
            x = getattr(self, f"linear_{i}")(self.act(x))
        return x
