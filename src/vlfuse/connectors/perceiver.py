"""Perceiver Resampler (Flamingo, Alayrac et al., 2022, arXiv:2204.14198): ``Q`` learned latents read the image.

Each layer lets the latents attend to ``concat(media tokens, latents)`` (keys and values from both, queries from
the latents only: the paper differs from the original Perceiver in concatenating the latents' own keys/values),
then applies a feed-forward block; both are residual and pre-normed. The ``T`` frames of one image slot are
resampled jointly: a learned time embedding per frame is added to its ``P`` patches, then the ``T * P`` media tokens
are flattened into one sequence, so ``V = Q`` whatever ``T`` and ``P`` are.

Two variants, weight-compatible with ``transformers`` (parity in ``tests/parity/test_perceiver_parity.py``):

- ``idefics``: ``IdeficsPerceiverResampler`` (``transformers.models.idefics.perceiver``; after flamingo-pytorch):
  LayerNorm, multi-head attention (optional LayerNorm on q and k per head), ReLU MLP, all linears bias-free.
  The perceiver runs at the vision width ``Dv``. Idefics hands those ``Dv``-wide latents to its gated
  cross-attention; our LLM slot needs ``Dt``, so when ``Dv != Dt`` one ``Linear(Dv, Dt)`` (with bias) follows.
- ``idefics2``: ``Idefics2Connector`` (``transformers.models.idefics2.modeling_idefics2``): a SwiGLU input
  projection ``Dv -> Dt`` first, then the perceiver at ``Dt`` with RMSNorm, grouped-query attention
  (``kv_heads``), SwiGLU feed-forward, and an optional mask over padded media tokens.

Deviations: Idefics has no time embeddings (``max_frames=0`` turns ours off); Idefics2 initialises all latents to
one (they would stay identical under training from that init), ours are ``randn`` as Flamingo's; time embeddings
start at zero, so a fresh model treats frames alike until training separates them.
Shapes: ``B*N`` images, ``T`` frames, ``P`` patches per frame, ``Dv`` vision width, ``W`` perceiver width
(``Dv`` for idefics, ``Dt`` for idefics2), ``Q`` latents, ``Dt`` LLM width, ``h`` heads, ``hk`` key/value heads,
``hd`` head dim; ``V = Q``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlfuse.connectors.base import Connector
from vlfuse.registry import CONNECTORS


@dataclass(frozen=True)
class PerceiverConfig:
    kind: Literal["perceiver"] = "perceiver"
    variant: Literal["idefics", "idefics2"] = "idefics"  # see the module docstring
    n_latents: int = 64  # Q: visual tokens per image slot, whatever P and T are
    depth: int = 6  # perceiver layers (Idefics 6, Idefics2 3)
    heads: int = 8
    head_dim: int = 64
    kv_heads: int | None = None  # key/value heads (grouped-query attention, as Idefics2); None: = heads
    ff_mult: int = 4  # feed-forward hidden width = ff_mult * W
    max_frames: int = 1  # learned time embeddings (T <= max_frames); 0: none (as Idefics / Idefics2)
    qk_norm: bool = False  # idefics only: LayerNorm on each head's q and k (qk_layer_norms_perceiver)
    norm_eps: float | None = None  # None: 1e-5 (idefics LayerNorm) / 1e-6 (idefics2 RMSNorm)
    proj_hidden_dim: int | None = None  # idefics2 only: SwiGLU hidden width of the Dv -> Dt input projection
    #                                     (the LLM's intermediate size in Idefics2); None: ff_mult * Dt

    def __post_init__(self) -> None:
        for name in ("n_latents", "depth", "heads", "head_dim", "ff_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"perceiver {name}={getattr(self, name)} must be >= 1")
        if self.max_frames < 0:
            raise ValueError(f"perceiver max_frames={self.max_frames} must be >= 0 (0: no time embeddings)")
        kv = self.kv_heads or self.heads
        if kv < 1 or self.heads % kv:
            raise ValueError(f"perceiver kv_heads={self.kv_heads} must divide heads={self.heads}")
        if self.qk_norm and self.variant != "idefics":
            raise ValueError("perceiver qk_norm=true exists only in variant 'idefics'; set qk_norm: false")


def _norm(variant: str, width: int, eps: float | None) -> nn.Module:
    if variant == "idefics2":
        return nn.RMSNorm(width, eps=1e-6 if eps is None else eps)
    return nn.LayerNorm(width, eps=1e-5 if eps is None else eps)


class FeedForward(nn.Module):
    """``down(act(up(x)))`` (idefics, ReLU) or ``down(silu(gate(x)) * up(x))`` (SwiGLU, idefics2); no biases."""

    def __init__(self, dim: int, hidden: int, out: int, gated: bool) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False) if gated else None
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (..., out)``."""
        if self.gate is None:
            return self.down(F.relu(self.up(x)))
        return self.down(F.silu(self.gate(x)) * self.up(x))


class PerceiverAttention(nn.Module):
    """Latents (queries) attend to ``concat(media, latents)`` (keys and values); bias-free projections."""

    def __init__(self, width: int, heads: int, kv_heads: int, head_dim: int, qk_norm: bool) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q = nn.Linear(width, heads * head_dim, bias=False)
        self.k = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.v = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, width, bias=False)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else None

    def forward(self, latents: torch.Tensor, media: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``latents (B*N, Q, W)``, ``media (B*N, M, W)``, ``mask (B*N, M)`` (True: attend) -> ``(B*N, Q, W)``."""
        n, q_len, _ = latents.shape
        kv = torch.cat([media, latents], dim=1)  # (B*N, M+Q, W)
        q = self.q(latents).view(n, q_len, self.heads, self.head_dim).transpose(1, 2)  # (B*N, h, Q, hd)
        k = self.k(kv).view(n, kv.shape[1], self.kv_heads, self.head_dim).transpose(1, 2)  # (B*N, hk, M+Q, hd)
        v = self.v(kv).view(n, kv.shape[1], self.kv_heads, self.head_dim).transpose(1, 2)  # (B*N, hk, M+Q, hd)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.heads != self.kv_heads:  # head i reads key/value head i // groups, as transformers' repeat_kv
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)  # (B*N, h, M+Q, hd)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)  # (B*N, h, M+Q, hd)
        attn_mask = None
        if mask is not None:  # the latents are always visible, so no row is fully masked
            attn_mask = F.pad(mask.bool(), (0, q_len), value=True)[:, None, None, :]  # (B*N, 1, 1, M+Q)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B*N, h, Q, hd)
        return self.o(out.transpose(1, 2).reshape(n, q_len, self.heads * self.head_dim))  # (B*N, Q, W)


class PerceiverLayer(nn.Module):
    """Pre-norm residual block: ``x += attn(norm(x), norm(media))``, then ``x += ff(norm(x))``."""

    def __init__(self, config: PerceiverConfig, width: int) -> None:
        super().__init__()
        v, eps = config.variant, config.norm_eps
        self.media_norm, self.latent_norm = _norm(v, width, eps), _norm(v, width, eps)
        self.attn = PerceiverAttention(width, config.heads, config.kv_heads or config.heads, config.head_dim,
                                       config.qk_norm)
        self.ff_norm = _norm(v, width, eps)
        self.ff = FeedForward(width, config.ff_mult * width, width, gated=v == "idefics2")

    def forward(self, latents: torch.Tensor, media: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``latents (B*N, Q, W)``, ``media (B*N, M, W)`` -> ``(B*N, Q, W)``."""
        latents = latents + self.attn(self.latent_norm(latents), self.media_norm(media), mask)
        return latents + self.ff(self.ff_norm(latents))


@CONNECTORS.register("perceiver", PerceiverConfig)
class PerceiverResampler(Connector):
    """Resample the ``T * P`` media tokens of each image slot into ``Q`` latents of width ``Dt``.

    Args:
        config: a ``PerceiverConfig``.
        in_dim: ``Dv``, the vision width.
        out_dim: ``Dt``, the LLM width.

    Example:
        >>> c = PerceiverResampler(PerceiverConfig(n_latents=16, depth=2, max_frames=4), in_dim=64, out_dim=128)
        >>> c(torch.randn(3, 49, 64)).shape, c(torch.randn(3, 4, 49, 64)).shape  # one frame, four frames
        (torch.Size([3, 16, 128]), torch.Size([3, 16, 128]))
    """

    def __init__(self, config: PerceiverConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.config, self.in_dim, self.out_dim = config, in_dim, out_dim
        width = out_dim if config.variant == "idefics2" else in_dim  # W
        self.in_proj = None
        if config.variant == "idefics2":
            self.in_proj = FeedForward(in_dim, config.proj_hidden_dim or config.ff_mult * out_dim, out_dim, gated=True)
        self.time_emb = nn.Parameter(torch.zeros(config.max_frames, width)) if config.max_frames else None
        self.latents = nn.Parameter(torch.randn(config.n_latents, width))
        self.layers = nn.ModuleList(PerceiverLayer(config, width) for _ in range(config.depth))
        self.norm = _norm(config.variant, width, config.norm_eps)
        self.out_proj = nn.Linear(width, out_dim) if width != out_dim else None

    def num_tokens(self, num_patches: int) -> int:
        return self.config.n_latents

    def forward(self, features: torch.Tensor, media_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B*N, P, Dv)`` or ``(B*N, T, P, Dv)`` -> ``(B*N, Q, Dt)``.

        ``media_mask`` (``(B*N, P)`` or ``(B*N, T, P)``, True where a patch is real) hides padded patches.
        """
        media, mask = self._media(features, media_mask)  # (B*N, T*P, W), (B*N, T*P) | None
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1)  # (B*N, Q, W)
        for layer in self.layers:
            latents = layer(latents, media, mask)  # (B*N, Q, W)
        latents = self.norm(latents)
        return latents if self.out_proj is None else self.out_proj(latents)  # (B*N, Q, Dt)

    def _media(self, features: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Check shapes, project (idefics2), add time embeddings, flatten frames: ``-> (B*N, T*P, W)``."""
        if features.dim() not in (3, 4) or features.shape[-1] != self.in_dim:
            raise ValueError(f"perceiver expects features (B*N, P, {self.in_dim}) or (B*N, T, P, {self.in_dim}), "
                             f"got {tuple(features.shape)}")
        if mask is not None and mask.shape != features.shape[:-1]:
            raise ValueError(f"perceiver media_mask has shape {tuple(mask.shape)}; it must be the features' shape "
                             f"without the last axis: {tuple(features.shape[:-1])}")
        x = features if features.dim() == 4 else features.unsqueeze(1)  # (B*N, T, P, Dv)
        if self.in_proj is not None:
            x = self.in_proj(x)  # (B*N, T, P, W)
        frames = x.shape[1]
        if self.time_emb is not None:
            if frames > self.time_emb.shape[0]:
                raise ValueError(f"perceiver got {frames} frames per image slot but max_frames="
                                 f"{self.time_emb.shape[0]}; raise connector.max_frames to >= {frames}")
            x = x + self.time_emb[:frames, None, :]  # (B*N, T, P, W)
        elif frames > 1:
            raise ValueError(f"perceiver got {frames} frames but max_frames=0 (no time embeddings); "
                             "set connector.max_frames to the most frames per image slot")
        return x.flatten(1, 2), None if mask is None else mask.flatten(1)  # (B*N, T*P, W), (B*N, T*P)
