"""BLIP-2's Q-Former (Li et al., 2023, arXiv:2301.12597): ``Q`` learned queries read the frozen image features.

A BERT-style post-norm transformer over ``[queries; text]``. Queries and text share every self-attention layer
(what each position sees is set by a mask, one per objective: ``mask_for``); every ``cross_attention_frequency``-th
layer (layers 0, f, 2f, ...) the queries, and only they, cross-attend to the image features; query positions and
text positions have separate feed-forward weights. The text side (word + position embeddings; the LayerNorm that
follows covers queries and text alike) exists when ``vocab_size > 0``, with BLIP-2's stage-1 heads
(``QFormerHeads``: ITC projections and temperature, the ITM classifier, the ITG language-model head).
As a connector the queries alone run (no text) and a linear layer maps them to the LLM width
(BLIP-2's ``language_projection``): ``(B*N, P, Dv) -> (B*N, Q, Dt)``, ``num_tokens(P) = Q``. With ``instruction``
(InstructBLIP, Dai et al., 2023, arXiv:2305.06500) the queries run with the prompt's tokens in the Q-Former's own
vocabulary (batch keys ``qformer_input_ids`` / ``qformer_attention_mask``, right-padded), bidirectionally.
Reference: ``transformers.Blip2QFormerModel`` / ``InstructBlipQFormerModel`` (loaders in ``vlfuse.convert``;
parity in ``tests/parity/test_qformer_parity.py``, ``test_instructblip.py``) and LAVIS ``blip2_qformer.py``.
Deviations: the text side reads the VLM's own tokenizer ids (BLIP-2 uses BERT's), with [CLS] and [DEC] as the last
two ids of the Q-Former vocabulary; queries start as ``normal(0, 0.02)`` as in LAVIS (transformers: zero).
Shapes: ``B`` rows (``B*N`` images), ``P`` patches, ``Dv`` vision width, ``Q`` queries, ``T`` text length,
``L = Q + T``, ``H`` Q-Former width, ``E`` ITC width, ``Dt`` LLM width, ``h`` heads, ``hd`` head dim, ``W`` vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlfuse.connectors.base import Connector
from vlfuse.registry import CONNECTORS

MaskKind = Literal["bidirectional", "unimodal", "causal"]
INSTRUCTION_INPUTS = ("qformer_input_ids", "qformer_attention_mask")  # the batch keys an instruction Q-Former reads


@dataclass(frozen=True)
class QFormerConfig:
    kind: Literal["qformer"] = "qformer"
    hidden_size: int = 768  # H (BLIP-2: BERT-base)
    layers: int = 12
    heads: int = 12
    intermediate_size: int = 3072  # feed-forward width
    num_queries: int = 32  # Q: visual tokens per image
    cross_attention_frequency: int = 2  # cross-attention in layers 0, f, 2f, ...
    vision_width: int | None = None  # Dv the cross-attention reads; None: the encoder's width
    vocab_size: int = 0  # text side's vocabulary, [CLS] and [DEC] included; 0: no text path and no stage-1 heads
    cls_token_id: int | None = None  # None: vocab_size - 2
    dec_token_id: int | None = None  # None: vocab_size - 1
    max_text_positions: int = 512  # learned text position embeddings
    embed_dim: int = 256  # E: ITC projection width (BLIP-2 image_text_hidden_size)
    dropout: float = 0.1  # hidden and attention dropout (BERT)
    layer_norm_eps: float = 1e-12
    activation: Literal["gelu", "gelu_tanh", "relu"] = "gelu"
    instruction: bool = False  # InstructBLIP: the queries also read the prompt (qformer_input_ids); no stage-1 heads

    def __post_init__(self) -> None:
        for name in ("hidden_size", "layers", "heads", "intermediate_size", "num_queries",
                     "cross_attention_frequency", "max_text_positions", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"qformer {name}={getattr(self, name)} must be >= 1")
        if self.hidden_size % self.heads:
            raise ValueError(f"qformer heads={self.heads} must divide hidden_size={self.hidden_size}")
        if self.vocab_size and self.vocab_size < 3:
            raise ValueError(f"qformer vocab_size={self.vocab_size}: give 0 (no text) or the text vocabulary + 2")
        if self.instruction and not self.vocab_size:
            raise ValueError("qformer instruction=True reads the prompt's tokens: set connector.vocab_size to the "
                             "Q-Former tokenizer's size")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"qformer dropout={self.dropout} must be in [0, 1)")

    @property
    def cls_id(self) -> int:
        return self.vocab_size - 2 if self.cls_token_id is None else self.cls_token_id

    @property
    def dec_id(self) -> int:
        return self.vocab_size - 1 if self.dec_token_id is None else self.dec_token_id


_ACT = {"gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


def mask_for(kind: MaskKind, n_query: int, text_mask: torch.Tensor) -> torch.Tensor:
    """BLIP-2's self-attention masks over ``[queries; text]``: ``(B, 1, L, L)``, True where row may see column.

    ``bidirectional`` (ITM): all see all. ``unimodal`` (ITC): queries see queries, text sees text.
    ``causal`` (ITG): queries see queries only; text sees every query and the text up to itself.
    Padded text (``text_mask (B, T)`` False) is never seen.
    """
    b, t = text_mask.shape
    length = n_query + t
    idx = torch.arange(length, device=text_mask.device)
    is_q = idx < n_query  # (L,)
    if kind == "bidirectional":
        allowed = torch.ones(length, length, dtype=torch.bool, device=text_mask.device)
    elif kind == "unimodal":
        allowed = is_q[:, None] == is_q[None, :]  # (L, L)
    elif kind == "causal":
        allowed = torch.where(is_q[:, None], is_q[None, :], idx[None, :] <= idx[:, None])  # (L, L)
    else:
        raise ValueError(f"mask kind {kind!r} is not one of bidirectional, unimodal, causal")
    keys = torch.cat([text_mask.new_ones(b, n_query), text_mask], dim=1).bool()  # (B, L)
    return allowed[None, None] & keys[:, None, None, :]  # (B, 1, L, L)


class QFormerAttention(nn.Module):
    """BERT attention block: ``norm(x + drop(o(attn(q(x), k(ctx), v(ctx)))))``; ``ctx = x`` for self-attention."""

    def __init__(self, width: int, ctx_width: int, heads: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.o = nn.Linear(width, width), nn.Linear(width, width)
        self.k, self.v = nn.Linear(ctx_width, width), nn.Linear(ctx_width, width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, L, H)``, ``ctx (B, M, Dc)``, ``mask (B, 1, L, M)`` bool -> ``(B, L, H)``."""
        b, n, width = x.shape
        hd = width // self.heads
        q = self.q(x).view(b, n, self.heads, hd).transpose(1, 2)  # (B, h, L, hd)
        k = self.k(ctx).view(b, ctx.shape[1], self.heads, hd).transpose(1, 2)  # (B, h, M, hd)
        v = self.v(ctx).view(b, ctx.shape[1], self.heads, hd).transpose(1, 2)  # (B, h, M, hd)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, L, hd)
        out = out.transpose(1, 2).reshape(b, n, width)  # (B, L, H)
        return self.norm(x + self.drop(self.o(out)))


class QFormerFeedForward(nn.Module):
    """BERT feed-forward block: ``norm(x + drop(down(act(up(x)))))``."""

    def __init__(self, width: int, hidden: int, activation: str, dropout: float, eps: float) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.act = _ACT[activation]
        self.norm = nn.LayerNorm(width, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n, H) -> (B, n, H)``."""
        return self.norm(x + self.drop(self.down(self.act(self.up(x)))))


class QFormerLayer(nn.Module):
    """Shared self-attention; cross-attention for the queries (some layers); per-modality feed-forward."""

    def __init__(self, config: QFormerConfig, vision_width: int, cross: bool) -> None:
        super().__init__()
        c = config
        self.self_attn = QFormerAttention(c.hidden_size, c.hidden_size, c.heads, c.dropout, c.layer_norm_eps)
        self.cross_attn = QFormerAttention(c.hidden_size, vision_width, c.heads, c.dropout,
                                           c.layer_norm_eps) if cross else None
        ff = (c.hidden_size, c.intermediate_size, c.activation, c.dropout, c.layer_norm_eps)
        self.ff_query = QFormerFeedForward(*ff)
        self.ff_text = QFormerFeedForward(*ff) if c.vocab_size else None  # text positions' own weights

    def forward(self, x: torch.Tensor, n_query: int, mask: torch.Tensor | None,
                image: torch.Tensor | None) -> torch.Tensor:
        """``x (B, L, H)``, ``mask (B, 1, L, L)``, ``image (B, P, Dv)`` -> ``(B, L, H)``."""
        x = self.self_attn(x, x, mask)
        queries, text = x[:, :n_query], x[:, n_query:]  # (B, Q, H), (B, T, H)
        if self.cross_attn is not None and n_query:
            queries = self.cross_attn(queries, image)  # every query sees every patch
        parts = [self.ff_query(queries)] if n_query else []
        if text.shape[1]:
            assert self.ff_text is not None  # encode() refuses text without a text path
            parts.append(self.ff_text(text))
        return torch.cat(parts, dim=1)  # (B, L, H)


class QFormerHeads(nn.Module):
    """BLIP-2's stage-1 heads: ITC projections and temperature, ITM classifier, ITG LM head (tied decoder)."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        h, e = config.hidden_size, config.embed_dim
        self.vision_proj, self.text_proj = nn.Linear(h, e), nn.Linear(h, e)
        self.temp = nn.Parameter(torch.tensor(0.07))  # ITC temperature, clamped to [0.001, 0.5] where used
        self.itm = nn.Linear(h, 2)
        self.lm_dense, self.lm_norm = nn.Linear(h, h), nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.lm_bias = nn.Parameter(torch.zeros(config.vocab_size))  # decoder weight = the word embeddings
        self.act = _ACT[config.activation]


@CONNECTORS.register("qformer", QFormerConfig)
class QFormer(Connector):
    """The Q-Former: ``Q`` queries (and optionally text) through ``layers`` BERT layers.

    Args:
        config: a ``QFormerConfig``.
        in_dim: ``Dv``, the vision width the cross-attention reads.
        out_dim: ``Dt``, the LLM width of the output projection.

    Example:
        >>> qf = QFormer(QFormerConfig(hidden_size=64, layers=2, heads=4, intermediate_size=128, num_queries=8),
        ...              in_dim=32, out_dim=48)
        >>> qf(torch.randn(3, 16, 32)).shape
        torch.Size([3, 8, 48])
    """

    def __init__(self, config: QFormerConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if config.vision_width is not None and config.vision_width != in_dim:
            raise ValueError(f"qformer vision_width={config.vision_width} but the encoder gives {in_dim}-wide "
                             "features; drop connector.vision_width or make them equal")
        c, self.config, self.in_dim, self.out_dim = config, config, in_dim, out_dim
        self.query_tokens = nn.Parameter(torch.empty(c.num_queries, c.hidden_size))
        self.word_emb = nn.Embedding(c.vocab_size, c.hidden_size) if c.vocab_size else None
        self.pos_emb = nn.Embedding(c.max_text_positions, c.hidden_size) if c.vocab_size else None
        self.embed_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.embed_drop = nn.Dropout(c.dropout)
        f = c.cross_attention_frequency
        self.layers = nn.ModuleList(QFormerLayer(c, in_dim, cross=i % f == 0) for i in range(c.layers))
        self.heads = QFormerHeads(c) if c.vocab_size and not c.instruction else None
        self.inputs = INSTRUCTION_INPUTS if c.instruction else ()
        self.proj = nn.Linear(c.hidden_size, out_dim)  # BLIP-2's language_projection
        self.apply(_bert_init)
        nn.init.normal_(self.query_tokens, std=0.02)

    def num_tokens(self, num_patches: int) -> int:
        return self.config.num_queries

    def forward(self, features: torch.Tensor, qformer_input_ids: torch.Tensor | None = None,
                qformer_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B*N, P, Dv) -> (B*N, Q, Dt)``: the query outputs, projected to the LLM width. With ``instruction``,
        ``qformer_input_ids / qformer_attention_mask (B*N, T)`` (right-padded, one per image) run with the queries."""
        if not self.config.instruction:
            return self.proj(self.encode(features)[0])  # (B*N, Q, Dt)
        if qformer_input_ids is None:
            raise ValueError("this Q-Former reads the instruction (InstructBLIP): pass qformer_input_ids and "
                             "qformer_attention_mask, as model.processor()(text=..., images=...) returns them")
        if qformer_input_ids.shape[0] != features.shape[0]:
            raise ValueError(f"{features.shape[0]} image(s) but {qformer_input_ids.shape[0]} instruction(s): the "
                             "instruction Q-Former reads one prompt per image; give each prompt exactly one image")
        queries, _ = self.encode(features, qformer_input_ids, qformer_attention_mask, "bidirectional")
        return self.proj(queries)  # (B*N, Q, Dt)

    def encode(self, image: torch.Tensor | None, text_ids: torch.Tensor | None = None,
               text_mask: torch.Tensor | None = None,
               mask: MaskKind = "bidirectional") -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Run ``[queries; text]`` through the layers under ``mask`` (see ``mask_for``).

        ``image (B, P, Dv)`` (None: no queries), ``text_ids (B, T)`` (None: no text), ``text_mask (B, T)``
        (None: no padding) -> ``(query outputs (B, Q, H) | None, text outputs (B, T, H) | None)``.
        """
        x, n_query, attn = self._embed(image, text_ids, text_mask, mask)  # (B, L, H)
        for layer in self.layers:
            x = layer(x, n_query, attn, image)
        queries = x[:, :n_query] if n_query else None
        return queries, (x[:, n_query:] if text_ids is not None else None)

    def _embed(self, image: torch.Tensor | None, text_ids: torch.Tensor | None, text_mask: torch.Tensor | None,
               mask: MaskKind) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """Check inputs; ``-> (embeddings (B, L, H), Q or 0, attention mask (B, 1, L, L) | None)``."""
        if image is None and text_ids is None:
            raise ValueError("qformer.encode needs image features, text ids, or both")
        parts = []
        if image is not None:
            if image.dim() != 3 or image.shape[-1] != self.in_dim:
                raise ValueError(f"qformer expects features (B*N, P, {self.in_dim}), got {tuple(image.shape)}")
            parts.append(self.query_tokens.expand(image.shape[0], -1, -1))  # (B, Q, H), fp32 under autocast
        if text_ids is not None:
            parts.append(self._embed_text(text_ids))  # (B, T, H)
        x = self.embed_drop(self.embed_norm(torch.cat(parts, dim=1)))  # (B, L, H)
        n_query = self.config.num_queries if image is not None else 0
        if text_ids is None:
            return x, n_query, None  # queries alone see each other
        if text_mask is None:
            text_mask = torch.ones_like(text_ids, dtype=torch.bool)
        return x, n_query, mask_for(mask, n_query, text_mask.bool())

    def _embed_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> word + position embeddings ``(B, T, H)``."""
        if self.word_emb is None or self.pos_emb is None:
            raise ValueError("this qformer has no text path (vocab_size=0); set connector.vocab_size to the "
                             "tokenizer's size + 2 to train it with text (BLIP-2 stage 1)")
        t = text_ids.shape[1]
        if t > self.config.max_text_positions:
            raise ValueError(f"text of {t} tokens exceeds qformer max_text_positions="
                             f"{self.config.max_text_positions}; shorten it or raise connector.max_text_positions")
        if int(text_ids.max()) >= self.config.vocab_size or int(text_ids.min()) < 0:
            raise ValueError(f"text ids span [{int(text_ids.min())}, {int(text_ids.max())}] but the qformer "
                             f"vocabulary has {self.config.vocab_size}; raise connector.vocab_size")
        pos = torch.arange(t, device=text_ids.device)
        return self.word_emb(text_ids) + self.pos_emb(pos)[None]  # (B, T, H)


def _bert_init(module: nn.Module) -> None:
    """BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
