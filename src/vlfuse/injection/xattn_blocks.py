"""The gated cross-attention block that ``cross_attention`` puts before a decoder layer (Flamingo, IDEFICS, Llama 3.2).

Flamingo (Alayrac et al., 2022, arXiv:2204.14198, Fig. 4) inserts, before a frozen LM layer::

    x = x + tanh(a_attn) * XAttn(norm(x), media)      # text queries, media keys / values
    x = x + tanh(a_ff) * FFW(norm(x))

with ``a_attn = a_ff = 0`` at initialisation, so the fresh model is the LM. References: flamingo-pytorch
``GatedCrossAttentionBlock``; ``transformers`` ``IdeficsGatedCrossAttentionLayer`` (RMSNorm, SwiGLU FFW, optional
RMSNorm on each head's q and k); ``MllamaCrossAttentionDecoderLayer`` (Llama 3.2 Vision: q/k RMSNorm, grouped-query
attention, and the FFW output zeroed on rows that see no image, its ``full_text_row_masked_out_mask``).

The media keys / values are projected once (``project_media``) and handed back on every call: in generation they
are cached and never recomputed. Attention is ``F.scaled_dot_product_attention``.
Shapes: ``B`` batch, ``T`` text length, ``M`` media tokens per sample (``N_max * V``), ``Dt`` LLM width,
``Dm`` media width, ``h`` query heads, ``hk`` key/value heads, ``hd`` head dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BlockShape:
    """The sizes and variants of one block (resolved from ``CrossAttentionConfig`` and the LLM)."""

    dim: int  # Dt
    media_dim: int  # Dm
    heads: int
    kv_heads: int
    head_dim: int
    ff_hidden: int
    ff: str  # "gelu" (Flamingo) | "swiglu" (IDEFICS, Llama 3.2 Vision)
    norm: str  # "layernorm" | "rmsnorm"
    norm_eps: float
    qk_norm: bool
    gate: str  # "scalar" | "vector"


def make_norm(kind: str, width: int, eps: float) -> nn.Module:
    return nn.RMSNorm(width, eps=eps) if kind == "rmsnorm" else nn.LayerNorm(width, eps=eps)


class FeedForward(nn.Module):
    """``down(gelu(up(x)))`` (Flamingo) or ``down(silu(gate(x)) * up(x))`` (SwiGLU); bias-free."""

    def __init__(self, dim: int, hidden: int, gated: bool) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False) if gated else None
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, Dt) -> (B, T, Dt)``."""
        if self.gate is None:
            return self.down(F.gelu(self.up(x)))
        return self.down(F.silu(self.gate(x)) * self.up(x))


class CrossAttention(nn.Module):
    """Text queries attend to media keys / values; bias-free projections, optional per-head q/k RMSNorm."""

    def __init__(self, s: BlockShape) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = s.heads, s.kv_heads, s.head_dim
        self.q_proj = nn.Linear(s.dim, s.heads * s.head_dim, bias=False)
        self.k_proj = nn.Linear(s.media_dim, s.kv_heads * s.head_dim, bias=False)
        self.v_proj = nn.Linear(s.media_dim, s.kv_heads * s.head_dim, bias=False)
        self.o_proj = nn.Linear(s.heads * s.head_dim, s.dim, bias=False)
        self.q_norm = nn.RMSNorm(s.head_dim, eps=s.norm_eps) if s.qk_norm else None
        self.k_norm = nn.RMSNorm(s.head_dim, eps=s.norm_eps) if s.qk_norm else None

    def project_media(self, media: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``media (B, M, Dm)`` -> keys, values ``(B, hk, M, hd)``: what generation caches."""
        b, m, _ = media.shape
        k = self.k_proj(media).view(b, m, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, hk, M, hd)
        v = self.v_proj(media).view(b, m, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, hk, M, hd)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return k, v

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, T, Dt)``, ``k v (B, hk, M, hd)``, ``mask (B, 1, T, M)`` (True: attend) -> ``(B, T, Dt)``.

        Every row of ``mask`` must allow at least one key (the caller zeroes rows that should see nothing).
        """
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, h, T, hd)
        if self.q_norm is not None:
            q = self.q_norm(q)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.heads != self.kv_heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))  # (B, T, Dt)


class GatedCrossAttentionBlock(nn.Module):
    """``x += tanh(a_attn) * XAttn(norm(x))``, then ``x += tanh(a_ff) * FFW(norm(x))``; gates start at ``gate_init``.

    Args:
        shape: a ``BlockShape``.
        ff_text_rows: apply the FFW also to rows that see no image (Flamingo, IDEFICS); False zeroes it there
            (Llama 3.2 Vision).
        gate_init: the gates' starting value; 0 (Flamingo) makes the block the identity at initialisation.

    Example:
        >>> s = BlockShape(32, 32, 2, 2, 16, 128, "gelu", "layernorm", 1e-5, False, "scalar")
        >>> blk = GatedCrossAttentionBlock(s, ff_text_rows=True)
        >>> k, v = blk.attn.project_media(torch.randn(1, 8, 32))
        >>> blk(torch.randn(1, 5, 32), k, v, torch.ones(1, 1, 5, 8, dtype=torch.bool), torch.ones(1, 5, 1)).shape
        torch.Size([1, 5, 32])
    """

    def __init__(self, shape: BlockShape, ff_text_rows: bool = True, gate_init: float = 0.0) -> None:
        super().__init__()
        self.ff_text_rows = ff_text_rows
        self.attn_norm = make_norm(shape.norm, shape.dim, shape.norm_eps)
        self.attn = CrossAttention(shape)
        self.ff_norm = make_norm(shape.norm, shape.dim, shape.norm_eps)
        self.ff = FeedForward(shape.dim, shape.ff_hidden, gated=shape.ff == "swiglu")
        gate_shape = (shape.dim,) if shape.gate == "vector" else (1,)
        self.attn_gate = nn.Parameter(torch.full(gate_shape, gate_init))  # tanh(0) = 0: 0 starts as the identity
        self.ff_gate = nn.Parameter(torch.full(gate_shape, gate_init))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                rows: torch.Tensor, ff_rows: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, T, Dt)``, cached ``k v (B, hk, M, hd)``, ``mask (B, 1, T, M)`` -> ``(B, T, Dt)``.

        ``rows (B, T, 1)`` is 1 where a token sees some image, 0 where its cross-attention output is zero;
        ``ff_rows`` (default ``rows``) is where the FFW applies when ``ff_text_rows`` is off.
        """
        if k.shape[2] == 0:  # no image anywhere in the batch: every row sees nothing
            attn = torch.zeros_like(x)
        else:
            attn = self.attn(self.attn_norm(x), k, v, mask) * rows.to(x.dtype)  # (B, T, Dt)
        x = x + torch.tanh(self.attn_gate) * attn
        ff = self.ff(self.ff_norm(x))  # (B, T, Dt)
        if not self.ff_text_rows:
            ff = ff * (rows if ff_rows is None else ff_rows).to(x.dtype)
        return x + torch.tanh(self.ff_gate) * ff
