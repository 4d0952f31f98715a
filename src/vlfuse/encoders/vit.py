"""A small built-in Vision Transformer for CPU demos and tests (Dosovitskiy et al., 2020, arXiv:2010.11929).

Pre-norm blocks with ``F.scaled_dot_product_attention``, learned position embeddings, optional CLS token.
Shapes: ``C`` channels, ``H W`` pixels, ``P`` patches per image, ``Dv`` width, ``h`` heads, ``hd`` head dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlfuse.encoders.base import VisionEncoder
from vlfuse.registry import ENCODERS


@dataclass(frozen=True)
class ViTConfig:
    kind: Literal["vit"] = "vit"
    image_size: int = 32  # square input side in pixels
    patch_size: int = 4  # P = (image_size / patch_size) ** 2
    width: int = 128  # Dv
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    channels: int = 3
    cls_token: bool = False  # prepend a CLS vector (dropped from the features unless keep_cls)
    keep_cls: bool = False
    pos_embed: Literal["learned", "sincos"] = "learned"  # sincos: fixed 2-D sine-cosine (Beyer et al., 2022)

    def __post_init__(self) -> None:
        for key in ("image_size", "patch_size", "width", "heads", "channels"):
            if getattr(self, key) < 1:  # 0 fails later, deep inside torch
                raise ValueError(f"vit {key}={getattr(self, key)} must be >= 1")
        if self.depth < 0:  # depth 0 is the patch embedding alone (a probe uses it)
            raise ValueError(f"vit depth={self.depth} must be >= 0 (0: the patch embedding alone)")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"width={self.width} must be divisible by heads={self.heads}")
        if self.pos_embed == "sincos" and self.width % 4:
            raise ValueError(f"width={self.width} must be divisible by 4 for pos_embed='sincos'")


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings ``(grid * grid, dim)``: a quarter of the channels each for
    sin(y), cos(y), sin(x), cos(x) at geometric frequencies (as in MAE and Beyer et al., 2022, arXiv:2205.01580)."""
    y, x = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                          indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))  # (dim/4,)
    y, x = y.flatten()[:, None] * omega, x.flatten()[:, None] * omega  # (grid*grid, dim/4)
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1)  # (grid*grid, dim)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, p, 3, self.heads, d // self.heads)  # (B, P, 3, h, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, h, P, hd)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, h, P, hd)
        x = x + self.proj(a.transpose(1, 2).reshape(b, p, d))  # (B, P, Dv)
        return x + self.mlp(self.norm2(x))


@ENCODERS.register("vit", ViTConfig)
class ViT(VisionEncoder):
    """Built-in ViT.

    Args:
        config: ``ViTConfig``.

    Example:
        >>> enc = ViT(ViTConfig(image_size=32, patch_size=4, width=64, depth=2, heads=2))
        >>> enc(torch.randn(3, 3, 32, 32)).shape
        torch.Size([3, 64, 64])
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_dim = config.width
        self.image_size = config.image_size
        self.in_channels = config.channels
        self.grid = config.image_size // config.patch_size
        self.patch_embed = nn.Conv2d(config.channels, config.width, config.patch_size, stride=config.patch_size)
        n_pos = self.grid**2 + int(config.cls_token)
        if config.pos_embed == "sincos":
            fixed = torch.cat([torch.zeros(n_pos - self.grid**2, config.width), sincos_2d(self.grid, config.width)])
            self.register_buffer("pos_embed", fixed[None], persistent=False)  # (1, n_pos, Dv), not trained
        else:
            self.pos_embed = nn.Parameter(torch.randn(1, n_pos, config.width) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, config.width)) if config.cls_token else None
        self.blocks = nn.ModuleList(Block(config.width, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width)

    def num_patches(self, height: int, width: int) -> int:
        keep = int(self.config.cls_token and self.config.keep_cls)
        return (height // self.config.patch_size) * (width // self.config.patch_size) + keep

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B*N, C, H, W) -> (B*N, P, Dv)``."""
        self.check_pixels(pixel_values)
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)  # (B*N, P, Dv)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B*N, 1 + P, Dv)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.cls is not None and not self.config.keep_cls:
            x = x[:, 1:]  # drop CLS: (B*N, P, Dv)
        return x
