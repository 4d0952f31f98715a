"""C-Abstractor (Honeybee, Cha et al., CVPR 2024, arXiv:2312.06742): convolutions, pooling, convolutions, MLP.

A locality-preserving compressor: the patch features are laid back on their ``g x g`` grid, refined by ``depth``
residual convolution blocks, average-pooled to ``grid x grid`` cells, refined by ``depth`` more blocks, and each
cell is read out by an MLP. Unlike learned queries (Perceiver, Q-Former), every output token summarises one
neighbourhood of the image, so spatial layout survives the compression.

What we followed: Honeybee's reference ``CAbstractor`` (kakaobrain/honeybee ``projectors.py``) builds each
stage as a timm ``RegStage`` of RegNet-Y bottleneck blocks with SiLU and channel LayerNorm; the block
(``timm.models.regnet.Bottleneck`` defaults: bottleneck ratio 1, group size 1) is ``1x1 conv -> 3x3 depthwise
conv -> squeeze-excitation -> 1x1 conv`` plus a shortcut (a ``1x1 conv + norm`` when the width changes), each conv
bias-free and followed by LayerNorm (and SiLU except the last), a SiLU after the sum. The readout is Linear then
(SiLU, Linear) x (mlp_depth - 1), as Honeybee's ``build_mlp``. Written from those facts, at any depth.
Deviations: no learned input position embedding (Honeybee's needs ``P`` at build time; a ViT's features already
carry positions) and no extra end-of-image tokens. Squeeze-excitation gates channels with an image-wide mean,
so one patch nudges every token slightly; ``se_ratio=0`` makes the receptive field strictly local.
Shapes: ``P = g * g`` patches per image, ``Dv`` vision width, ``Dh`` conv width, ``k = grid``, ``Dt`` LLM width,
``V = k * k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlfuse.connectors.base import Connector
from vlfuse.connectors.mlp import MLPConfig, MLPConnector
from vlfuse.registry import CONNECTORS


@dataclass(frozen=True)
class CAbstractorConfig:
    kind: Literal["cabstractor"] = "cabstractor"
    grid: int = 3  # k: output side, V = k * k tokens per image (Honeybee: 8 to 16 on 24x24 CLIP grids)
    depth: int = 3  # bottleneck blocks before and after the pooling each (Honeybee: 3); 0: pooling only
    hidden_dim: int | None = None  # Dh, width of the convolutions (Honeybee: 1024); None: Dv
    se_ratio: float = 0.25  # squeeze-excitation width = se_ratio * block input width (timm default); 0: no SE
    mlp_depth: int = 2  # readout linear layers, SiLU between (Honeybee: 2)

    def __post_init__(self) -> None:
        if self.grid < 1:
            raise ValueError(f"cabstractor grid={self.grid} must be >= 1 (V = grid * grid tokens per image)")
        if self.depth < 0 or self.mlp_depth < 1:
            raise ValueError(f"cabstractor depth={self.depth} must be >= 0 and mlp_depth={self.mlp_depth} >= 1")
        if not 0 <= self.se_ratio <= 1:
            raise ValueError(f"cabstractor se_ratio={self.se_ratio} must be in [0, 1] (0 turns SE off)")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B*N, C, H, W)`` map (timm ``LayerNorm2d``, eps 1e-6)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B*N, C, H, W)


def conv_norm(c_in: int, c_out: int, kernel: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Bias-free ``kernel x kernel`` conv (same padding), channel LayerNorm, and SiLU when ``act``."""
    layers = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False), LayerNorm2d(c_out)]
    return nn.Sequential(*layers, nn.SiLU()) if act else nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Scale each channel by ``sigmoid(expand(silu(reduce(mean over H, W))))`` (Hu et al., 2018)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B*N, C, 1, 1)
        return x * self.expand(F.silu(self.reduce(s))).sigmoid()  # (B*N, C, H, W)


class Bottleneck(nn.Module):
    """RegNet-Y block: ``1x1 -> 3x3 depthwise -> SE -> 1x1``, plus the shortcut, then SiLU."""

    def __init__(self, c_in: int, c_out: int, se_ratio: float) -> None:
        super().__init__()
        self.conv1 = conv_norm(c_in, c_out, 1)
        self.conv2 = conv_norm(c_out, c_out, 3, groups=c_out)
        self.se = SqueezeExcite(c_out, max(1, round(c_in * se_ratio))) if se_ratio > 0 else None
        self.conv3 = conv_norm(c_out, c_out, 1, act=False)
        self.shortcut = conv_norm(c_in, c_out, 1, act=False) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*N, c_in, H, W) -> (B*N, c_out, H, W)``."""
        y = self.conv2(self.conv1(x))  # (B*N, c_out, H, W)
        y = self.conv3(y if self.se is None else self.se(y))
        return F.silu(y + (x if self.shortcut is None else self.shortcut(x)))


def stage(depth: int, c_in: int, c_out: int, se_ratio: float) -> nn.Sequential:
    """``depth`` blocks; the first changes the width (timm ``RegStage`` at stride 1)."""
    return nn.Sequential(*(Bottleneck(c_in if i == 0 else c_out, c_out, se_ratio) for i in range(depth)))


@CONNECTORS.register("cabstractor", CAbstractorConfig)
class CAbstractorConnector(Connector):
    """Convolve the patch grid, pool it to ``grid x grid``, convolve again, read each cell out to ``Dt``.

    Example:
        >>> c = CAbstractorConnector(CAbstractorConfig(grid=2, depth=1), in_dim=32, out_dim=64)
        >>> c(torch.randn(3, 36, 32)).shape  # a 6 x 6 patch grid -> 2 x 2 tokens
        torch.Size([3, 4, 64])
    """

    def __init__(self, config: CAbstractorConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.config, self.in_dim, self.out_dim = config, in_dim, out_dim
        hidden = (config.hidden_dim or in_dim) if config.depth else in_dim  # no convolution: the pooled Dv
        self.stage1 = stage(config.depth, in_dim, hidden, config.se_ratio)
        self.stage2 = stage(config.depth, hidden, hidden, config.se_ratio)
        self.readout = MLPConnector(MLPConfig(depth=config.mlp_depth, activation="silu"), hidden, out_dim)

    def num_tokens(self, num_patches: int) -> int:
        self._side(num_patches)
        return self.config.grid**2

    def _side(self, num_patches: int) -> int:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(f"cabstractor needs a square patch grid, got {num_patches} features per image "
                             "(drop the CLS token: keep_cls / feature handling of the encoder)")
        if self.config.grid > side:
            raise ValueError(f"cabstractor grid={self.config.grid} is finer than the {side}x{side} patch grid; "
                             f"use grid <= {side}")
        return side

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, grid*grid, Dt)``."""
        n, p, d = features.shape
        side = self._side(p)
        x = features.transpose(1, 2).reshape(n, d, side, side)  # (B*N, Dv, g, g)
        x = self.stage1(x)  # (B*N, Dh, g, g)
        x = F.adaptive_avg_pool2d(x, self.config.grid)  # (B*N, Dh, k, k)
        x = self.stage2(x)  # (B*N, Dh, k, k)
        return self.readout(x.flatten(2).transpose(1, 2))  # (B*N, V, Dt)
