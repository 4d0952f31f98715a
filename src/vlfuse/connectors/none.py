"""The ``none`` connector: zero visual tokens, so the LLM never sees the image (the ``blind`` control of compare).

Every ``<image>`` placeholder expands to nothing and the VLM skips the vision encoder, so a model with this
connector is the text-only LLM trained on the same questions: the floor an image design must beat.
Shapes: ``P`` patches per image, ``Dv`` vision width, ``Dt`` LLM width; ``V = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from vlfuse.connectors.base import Connector
from vlfuse.registry import CONNECTORS


@dataclass(frozen=True)
class NoneConfig:
    kind: Literal["none"] = "none"


@CONNECTORS.register("none", NoneConfig)
class NoneConnector(Connector):
    """No parameters, no tokens.

    Example:
        >>> NoneConnector(NoneConfig(), in_dim=64, out_dim=128)(torch.randn(2, 16, 64)).shape
        torch.Size([2, 0, 128])
    """

    def __init__(self, config: NoneConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.config, self.in_dim, self.out_dim = config, in_dim, out_dim

    def num_tokens(self, num_patches: int) -> int:
        return 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, 0, Dt)``."""
        return features.new_zeros(features.shape[0], 0, self.out_dim)
