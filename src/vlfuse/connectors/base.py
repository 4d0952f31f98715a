"""The connector slot: vision features to LLM-width visual tokens.

Shapes: ``P`` patches per image, ``Dv`` vision width, ``V`` visual tokens handed to the LLM, ``Dt`` LLM width.
A connector maps ``features (B*N, P, Dv)`` to ``tokens (B*N, V, Dt)`` with ``V = num_tokens(P)``.
The budget calculator calls ``num_tokens`` and never runs the module, so the two cannot disagree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Connector(nn.Module, ABC):
    """Base of every registered connector; built as ``cls(config, in_dim=Dv, out_dim=Dt)``."""

    in_dim: int
    out_dim: int
    inputs: tuple[str, ...] = ()  # batch keys forward reads as keywords (e.g. an instruction for a Q-Former)

    @abstractmethod
    def num_tokens(self, num_patches: int) -> int:
        """``V`` for an input of ``P = num_patches`` feature vectors."""

    @abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, V, Dt)``."""
