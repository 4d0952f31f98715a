"""The two towers of a dual encoder: the image head on top of an encoder slot, and a ``transformers`` text encoder.

Image: the encoder slot's features (``P`` vectors per image), an optional LayerNorm (CLIP's / SigLIP's
``post_layernorm``), pooled to one vector by the first (CLS) vector, the mean, or attention pooling with one
learned probe (SigLIP's MAP head, Zhai et al., 2022, arXiv:2106.04560 section 3), then an optional projection.
Text: any ``transformers`` encoder built by ``AutoModel`` (CLIP's or SigLIP's text model, a BERT-like encoder, a
causal LM's base model) from a local folder or a config, its ``last_hidden_state`` pooled at the end-of-text
token (CLIP), the last position (SigLIP, whose text is padded to its full length), the first token (BERT's
[CLS]), the last real token (a causal LM), or the mean, then a projection.
Reference: ``transformers`` ``CLIPModel`` / ``SiglipModel`` (``get_image_features`` / ``get_text_features``).
Shapes: ``N`` images, ``P`` features per image, ``Dv`` vision width, ``B`` texts, ``T`` text length, ``Dx`` text
width, ``E`` shared embedding width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from vlfuse.hub import NO_REMOTE_CODE, check_folder

# model_types AutoModel does not map to their text-only class (transformers 5): the class, by its exported name
_TEXT_CLASSES = {"siglip_text_model": "SiglipTextModel"}
TEXT_TYPES = ["clip_text_model", "siglip_text_model", "bert", "roberta", "llama", "qwen2", "gpt2"]


@dataclass(frozen=True)
class ImageHeadConfig:
    pool: Literal["cls", "mean", "attention"] = "cls"  # cls: the first feature (CLIP); attention: SigLIP's MAP
    norm: bool = True  # LayerNorm over the features before pooling (CLIP / SigLIP post_layernorm)
    projection: bool = True  # Linear(Dv, E, bias=False) after pooling; False: E = Dv (SigLIP)
    heads: int = 4  # attention pooling heads
    intermediate_size: int = 0  # attention pooling MLP width (0: 4 x Dv)
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class TextTowerConfig:
    path: str | None = None  # local folder of a transformers text encoder (or a CLIP / SigLIP model), weights loaded
    config: dict[str, Any] = field(default_factory=lambda: {  # used when path is None; vocab_size follows the tokenizer
        "model_type": "clip_text_model", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 48})
    pool: Literal["eos", "last", "cls", "mean", "last_token"] = "eos"  # eos: CLIP; last: SigLIP; last_token: causal LM
    projection_bias: bool = False  # CLIP: no bias; SigLIP's text head has one
    padding: Literal["longest", "max_length"] = "longest"  # max_length: SigLIP (trained on full-length text)
    max_length: int = 0  # text positions; 0: the tower's max_position_embeddings

    def __post_init__(self) -> None:
        if self.path is None:
            from vlfuse.llm import check_hf_config

            object.__setattr__(self, "config", check_hf_config(self.config, "clip_text_model", "text.config",
                                                               TEXT_TYPES))


class AttentionPool(nn.Module):
    """One learned probe attends over the features, then a residual MLP (SigLIP's ``MultiheadAttentionPoolingHead``,
    same parameter names). ``(N, P, Dv) -> (N, Dv)``."""

    def __init__(self, width: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.layernorm = nn.LayerNorm(width, eps=eps)
        self.mlp = nn.ModuleDict({"fc1": nn.Linear(width, intermediate), "fc2": nn.Linear(intermediate, width)})

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        probe = self.probe.expand(features.shape[0], -1, -1)  # (N, 1, Dv)
        x = self.attention(probe, features, features, need_weights=False)[0]  # (N, 1, Dv)
        h = self.mlp["fc2"](F.gelu(self.mlp["fc1"](self.layernorm(x)), approximate="tanh"))
        return (x + h)[:, 0]  # (N, Dv)


class ImageHead(nn.Module):
    """Pool an encoder's ``(N, P, Dv)`` features to ``(N, E)`` (not normalised)."""

    def __init__(self, config: ImageHeadConfig, width: int, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps) if config.norm else nn.Identity()
        inner = config.intermediate_size or 4 * width
        self.pool = AttentionPool(width, config.heads, inner, config.layer_norm_eps) if config.pool == "attention" \
            else None
        if not config.projection and embed_dim != width:
            raise ValueError(f"head.projection is false, so the image embedding is the {width}-wide pooled feature, "
                             f"but embed_dim is {embed_dim}; set embed_dim={width} or head.projection=true")
        self.proj = nn.Linear(width, embed_dim, bias=False) if config.projection else nn.Identity()
        self.embed_dim = embed_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.norm(features)  # (N, P, Dv)
        if self.pool is not None:
            pooled = self.pool(x)  # (N, Dv)
        elif self.config.pool == "cls":
            pooled = x[:, 0]  # (N, Dv): the encoder must keep CLS first (hf: select=full)
        else:
            pooled = x.mean(dim=1)  # (N, Dv)
        return self.proj(pooled)  # (N, E)


def text_hf_config(config: TextTowerConfig, vocab_size: int | None, special: dict[str, int]) -> PretrainedConfig:
    """The tower's ``transformers`` config: from its folder (a two-tower folder gives its ``text_config``), or
    from ``config.config`` with ``vocab_size`` grown to the tokenizer and its special ids."""
    if config.path is not None:
        check_folder(config.path, "text.path", weights=True)
        hf = AutoConfig.from_pretrained(config.path, **NO_REMOTE_CODE)
        return getattr(hf, "text_config", hf)
    kwargs = dict(config.config)
    model_type = kwargs.pop("model_type", "clip_text_model")
    if vocab_size is not None:
        kwargs["vocab_size"] = max(vocab_size, int(kwargs.get("vocab_size") or 0))
    for key, value in special.items():
        kwargs.setdefault(key, value)
    return AutoConfig.for_model(model_type, **kwargs)


class TextTower(nn.Module):
    """A ``transformers`` text encoder, pooled and projected: ``input_ids, attention_mask (B, T) -> (B, E)``."""

    def __init__(self, config: TextTowerConfig, hf: PretrainedConfig, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        name = _TEXT_CLASSES.get(hf.model_type)
        if name is None:
            self.tower = AutoModel.from_config(hf)
        else:
            import transformers

            self.tower = getattr(transformers, name)(hf)
        if config.path is not None:
            self.tower = _load_text(config.path, self.tower)
        self.width = hf.hidden_size
        self.eos_token_id = getattr(hf, "eos_token_id", None)
        self.max_length = config.max_length or hf.max_position_embeddings
        self.proj = nn.Linear(self.width, embed_dim, bias=config.projection_bias)

    def pool(self, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, Dx) -> (B, Dx)`` at the positions ``config.pool`` names."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        how = self.config.pool
        if how == "eos":
            if self.eos_token_id is None:
                raise ValueError("text.pool=eos needs eos_token_id in the text tower's config; set it, or pool "
                                 "last_token")
            if self.eos_token_id == 2:  # transformers keeps the pre-#24773 rule for this id: the highest id
                return hidden[rows, input_ids.int().argmax(dim=-1)]
            return hidden[rows, (input_ids == self.eos_token_id).int().argmax(dim=-1)]  # the first EOS
        if how == "last":
            return hidden[:, -1]  # SigLIP: the last position, padding included (text padded to max length)
        if how == "cls":
            return hidden[:, 0]
        if how == "last_token":
            return hidden[rows, mask.long().sum(dim=1) - 1]  # right padding: the last real token
        m = mask.to(hidden.dtype)[..., None]  # (B, T, 1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.max_length:
            raise ValueError(f"text of {input_ids.shape[1]} tokens exceeds the text tower's {self.max_length} "
                             "positions; shorten it or raise text.max_length (and max_position_embeddings)")
        hidden = self.tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, Dx)
        return self.proj(self.pool(hidden, input_ids, attention_mask))  # (B, E)


def _load_text(path: str, tower: nn.Module) -> nn.Module:
    """The text tower's weights from a folder holding the tower alone or a full two-tower model."""
    hf = AutoConfig.from_pretrained(path, **NO_REMOTE_CODE)
    if not hasattr(hf, "text_config"):
        return AutoModel.from_pretrained(path, use_safetensors=True, **NO_REMOTE_CODE)
    full = AutoModel.from_pretrained(path, use_safetensors=True, **NO_REMOTE_CODE)
    tower.text_model.load_state_dict(full.text_model.state_dict())
    return tower
