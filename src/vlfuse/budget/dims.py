"""Dimensions the cost model needs: the LLM, the vision encoder, and the fusion modules' own sizes.

LLM presets copy the released ``config.json`` of each model (``num_hidden_layers``, ``hidden_size``,
``num_attention_heads``, ``num_key_value_heads``, ``intermediate_size``, ``vocab_size``); vision presets copy the
vision tower's config. ``--llm-dims layers=32,hidden=4096,heads=32,kv_heads=8,ffn=14336,vocab=128256`` builds one
by hand (``head_dim`` defaults to ``hidden / heads``; ``kv_heads`` to ``heads``).
Shapes and units: ``L`` layers, ``d`` (``Dt``) LLM width, ``h`` heads, ``g`` KV heads, ``hd`` head dim, ``f`` FFN
width, ``Dv`` vision width, ``P`` patches per image, ``Q`` learned queries / latents; everything in elements.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LLMDims:
    """A decoder-only LLM with grouped-query attention and a SwiGLU FFN (Llama / Qwen2 / Mistral layout)."""

    layers: int  # L
    hidden: int  # d
    heads: int  # h query heads
    ffn: int  # f, SwiGLU intermediate width
    vocab: int  # n_v, LM-head rows
    kv_heads: int = 0  # g; 0 means g = h (multi-head attention)
    head_dim: int = 0  # hd; 0 means d / h

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0 or (getattr(self, f.name) == 0 and f.name not in ("kv_heads", "head_dim")):
                raise ValueError(f"LLM dims: {f.name}={getattr(self, f.name)} must be positive")
        if self.head_dim == 0 and self.hidden % self.heads:
            raise ValueError(f"LLM dims: hidden={self.hidden} is not divisible by heads={self.heads}; "
                             "pass head_dim=... explicitly")

    @property
    def g(self) -> int:
        return self.kv_heads or self.heads

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads


@dataclass(frozen=True)
class VisionDims:
    """A ViT: ``P = (image / patch)^2`` patches (+ ``cls``) through ``layers`` pre-LN blocks with a GELU MLP."""

    layers: int
    hidden: int  # Dv
    heads: int
    ffn: int
    patch: int
    image: int
    cls: int = 1  # extra tokens (CLS) the encoder carries; dropped before the LLM

    def __post_init__(self) -> None:
        for key in ("layers", "hidden", "heads", "ffn", "patch", "image"):
            if getattr(self, key) < 1:
                raise ValueError(f"vision dims: {key}={getattr(self, key)} must be >= 1")
        if self.cls < 0:
            raise ValueError(f"vision dims: cls={self.cls} must be >= 0")

    @property
    def patches(self) -> int:
        return (self.image // self.patch) ** 2


@dataclass(frozen=True)
class FusionDims:
    """Sizes of the fusion modules themselves (defaults: the papers' choices)."""

    xattn_every: int = 4  # one gated cross-attention block per this many LLM layers (Flamingo)
    qformer_queries: int = 32  # BLIP-2 Q-Former: 32 queries, BERT-base width, cross-attention every 2nd layer
    qformer_layers: int = 12
    qformer_hidden: int = 768
    qformer_ffn: int = 3072
    perceiver_latents: int = 64  # Flamingo / Idefics2 perceiver resampler
    perceiver_layers: int = 3  # Idefics2 uses 3, Flamingo 6
    late_embed: int = 512  # CLIP's joint embedding width

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"fusion dims: {f.name}={getattr(self, f.name)} must be >= 1")


LLM_PRESETS: dict[str, LLMDims] = {
    # meta-llama/Meta-Llama-3-8B config.json
    "llama-3-8b": LLMDims(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    # Qwen/Qwen2-7B config.json (the LLM of LLaVA-OneVision-7B)
    "qwen2-7b": LLMDims(layers=28, hidden=3584, heads=28, kv_heads=4, ffn=18944, vocab=152064),
    # meta-llama/Llama-3.2-1B config.json (head_dim 64)
    "llama-3.2-1b": LLMDims(layers=16, hidden=2048, heads=32, kv_heads=8, ffn=8192, vocab=128256, head_dim=64),
    # lmsys/vicuna-7b-v1.5 config.json (the LLM of LLaVA-1.5-7B)
    "vicuna-7b": LLMDims(layers=32, hidden=4096, heads=32, kv_heads=32, ffn=11008, vocab=32000),
}
VISION_PRESETS: dict[str, VisionDims] = {
    # openai/clip-vit-large-patch14-336 vision_config (LLaVA-1.5): 576 patches + CLS
    "clip-vit-l-336": VisionDims(layers=24, hidden=1024, heads=16, ffn=4096, patch=14, image=336),
    # google/siglip-so400m-patch14-384 vision_config (LLaVA-OneVision, Idefics2 at 384): 729 patches, no CLS
    "siglip-so400m-384": VisionDims(layers=27, hidden=1152, heads=16, ffn=4304, patch=14, image=384, cls=0),
    # EVA ViT-g/14 as used by BLIP-2 (39 of its 40 layers): 256 patches + CLS
    "eva-vit-g-224": VisionDims(layers=39, hidden=1408, heads=16, ffn=6144, patch=14, image=224),
}


def parse_dims(text: str, cls: type, flag: str) -> Any:
    """``"layers=32,hidden=4096,..."`` -> ``cls(layers=32, hidden=4096, ...)``; names the bad or missing keys."""
    names = [f.name for f in fields(cls)]
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or key not in names:
            raise ValueError(f"{flag} {part!r}: expected KEY=INT with KEY one of {', '.join(names)}")
        try:
            values[key] = int(raw.replace("_", ""))
        except ValueError:
            raise ValueError(f"{flag} {part!r}: {raw!r} is not an integer") from None
    try:
        return cls(**values)
    except TypeError:
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [n for n in required if n not in values]
        raise ValueError(f"{flag} is missing {', '.join(missing)}; e.g. {flag} "
                         + ",".join(f"{n}=..." for n in required)) from None


def pick(preset: str | None, dims: str | None, presets: dict[str, Any], cls: type, flag: str, default: str) -> Any:
    """A preset by name, or explicit ``--*-dims``, never both; ``default`` preset otherwise."""
    if preset and dims:
        raise ValueError(f"pass either a preset or {flag}, not both")
    if dims:
        return parse_dims(dims, cls, flag)
    name = preset or default
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; presets are: {', '.join(presets)} (or give {flag} KEY=INT,...)")
    return presets[name]
