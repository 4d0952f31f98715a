"""Cross-attention injection: images stay out of the sequence; text hidden states attend to them inside the LLM.

Two families, one mechanism (a gated block before chosen decoder layers, ``xattn_blocks.GatedCrossAttentionBlock``):

- Flamingo / IDEFICS (Alayrac et al., 2022, arXiv:2204.14198; Laurençon et al., 2023, arXiv:2306.16527): a block
  before every ``every``-th decoder layer (layers 0, k, 2k, ... as IDEFICS' ``cross_layer_interval``).
- Llama 3.2 Vision (Meta, 2024; ``transformers`` ``MllamaForConditionalGeneration``): cross-attention layers at
  given indices (``layers``), with per-head q/k RMSNorm, grouped-query attention, SwiGLU and the FFW zeroed on
  rows that see no image (``qk_norm: true``, ``norm: rmsnorm``, ``ff: swiglu``, ``ff_text_rows: false``).

Every gate starts at zero, so a fresh model's logits are exactly its LLM's. An image is one ``<image>`` marker token
(``placeholder_tokens(V) == 1``); its ``V`` visual tokens are keys / values only (masks: ``xattn_media``).

How it reaches the LLM without editing ``transformers``: each chosen decoder layer is wrapped in a
``FusedDecoderLayer`` that keeps the layer's state-dict keys (hooks strip / restore the ``layer.`` level) and
delegates attribute reads to it. The blocks belong to the injector; the media travel through the LLM call as one
keyword argument, which ``transformers`` decoder models hand down to their layers (``**kwargs``), and the wrapper
takes it out before calling the layer. Nothing is stored on the layers. Every LLM in ``vlfuse.llm.LLM_TABLE``
works (each is tested in ``tests/unit/test_llm_families.py``); to add one, add its row there and its tiny config
to that test, which checks that its model forwards ``**kwargs`` to its decoder layers. The blocks act at the
decoder layers' width (``vlfuse.llm.decoder_width``), not the embeddings' (OPT-350m projects 512 to 1024).
Shapes: ``B`` batch, ``T`` text length, ``N_all`` images in the batch, ``V`` visual tokens per image, ``Dt`` LLM
width, ``Dm`` media width, ``W`` vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel

from vlfuse.injection.base import Injector, InjectorOutput
from vlfuse.injection.xattn_blocks import BlockShape, GatedCrossAttentionBlock
from vlfuse.injection.xattn_media import (
    CrossAttentionCache,
    CrossAttentionContext,
    check_images,
    keep_last_image,
    media_masks,
    pack_media,
)
from vlfuse.llm import cache_kwargs, decoder_layers, decoder_width, output_cache
from vlfuse.registry import INJECTIONS

CONTEXT_KEY = "vlfuse_cross_attention"  # the keyword the media travel under, through the LLM to its layers


@dataclass(frozen=True)
class CrossAttentionConfig:
    kind: Literal["cross_attention"] = "cross_attention"
    every: int = 1  # a block before LLM layers 0, k, 2k, ... (IDEFICS cross_layer_interval; Flamingo: 1 to 7)
    layers: tuple[int, ...] = ()  # or before exactly these LLM layer indices (Llama 3.2 Vision); overrides every
    media: Literal["last", "all", "group"] = "last"  # which preceding images a token reads: the most recent, all,
    #                                          or the most recent run of adjacent ones (transformers' Mllama)
    heads: int | None = None  # None: the LLM's attention heads
    kv_heads: int | None = None  # key/value heads (grouped-query); None: = heads
    head_dim: int | None = None  # None: Dt // heads
    media_dim: int | None = None  # width of the visual tokens K/V read (the connector's out_dim); None: Dt
    ff: Literal["gelu", "swiglu"] = "gelu"  # Flamingo GELU FFW, or SwiGLU (IDEFICS, Llama 3.2 Vision)
    ff_hidden: int | None = None  # FFW hidden width; None: 4 * Dt
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5
    qk_norm: bool = False  # RMSNorm on each head's q and k (Llama 3.2 Vision; IDEFICS qk_layer_norms)
    gate: Literal["scalar", "vector"] = "scalar"  # one tanh gate per block, or one per channel (IDEFICS "vector")
    gate_init: float = 0.0  # the gates' start: 0 keeps a pretrained LLM's logits (Flamingo); a random LLM has none
    ff_text_rows: bool = True  # the FFW acts on rows that see no image too (Flamingo); false zeroes it (Llama 3.2)
    unseen_rows: Literal["zero", "all_images"] = "zero"  # a row that sees no image: zero cross-attention output,
    #                                                     or read all its sample's images (transformers' Mllama)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"cross_attention every={self.every} must be >= 1 (1: a block before every layer)")
        if len(set(self.layers)) != len(self.layers) or any(i < 0 for i in self.layers):
            raise ValueError(f"cross_attention layers={list(self.layers)} must be distinct indices >= 0")
        for name in ("heads", "kv_heads", "head_dim", "media_dim", "ff_hidden"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"cross_attention {name}={value} must be >= 1 (or null for the default)")
        if self.heads and self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(f"cross_attention kv_heads={self.kv_heads} must divide heads={self.heads}")


def _strip_layer_keys(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict post-hook: ``prefix + "layer." + k`` -> ``prefix + k``, so the LLM's keys do not change."""
    inner = prefix + "layer."
    for key in [k for k in state if k.startswith(inner)]:
        state[prefix + key[len(inner):]] = state.pop(key)


def _restore_layer_keys(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load pre-hook, the inverse: ``prefix + k`` -> ``prefix + "layer." + k``."""
    inner = prefix + "layer."
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(inner)]:
        state[inner + key[len(prefix):]] = state.pop(key)


class FusedDecoderLayer(nn.Module):
    """A decoder layer with cross-attention block ``index`` (owned by the injector) run before it.

    The block comes through the call (``CONTEXT_KEY`` keyword); without it, this is the layer unchanged.
    """

    def __init__(self, layer: nn.Module, index: int) -> None:
        super().__init__()
        self.layer, self.index = layer, index
        self.register_state_dict_post_hook(_strip_layer_keys)
        self.register_load_state_dict_pre_hook(_restore_layer_keys)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # e.g. Qwen2's `attention_type`: the wrapped layer answers
            layer = self.__dict__.get("_modules", {}).get("layer")  # absent while copy / unpickle rebuild us
            if layer is None:
                raise
            return getattr(layer, name)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """``hidden_states (B, T, Dt)``; every other argument goes to the wrapped layer as given."""
        context: CrossAttentionContext | None = kwargs.pop(CONTEXT_KEY, None)
        if context is not None:
            hidden_states = context.apply(self.index, hidden_states)
        return self.layer(hidden_states, *args, **kwargs)


@dataclass
class CrossAttentionOutput(InjectorOutput):
    """``logits (B, T, W)``; ``past_key_values`` is a ``CrossAttentionCache`` when ``use_cache``."""

    past_key_values: CrossAttentionCache | None = None


def block_positions(config: CrossAttentionConfig, n_layers: int) -> list[int]:
    """LLM layer indices that get a block before them."""
    where = sorted(config.layers) if config.layers else list(range(0, n_layers, config.every))
    if where and where[-1] >= n_layers:
        raise ValueError(f"cross_attention layers={list(config.layers)} name layer {where[-1]} but the LLM has "
                         f"{n_layers} decoder layers (0..{n_layers - 1})")
    return where


def block_shape(config: CrossAttentionConfig, llm: PreTrainedModel) -> BlockShape:
    """Resolve the block sizes left ``None`` from the LLM's config; blocks act on the decoder layers' width."""
    dim = decoder_width(llm)
    heads = config.heads or int(llm.config.num_attention_heads)
    head_dim = config.head_dim or dim // heads
    if config.head_dim is None and dim % heads:
        raise ValueError(f"LLM width {dim} is not divisible by {heads} heads; set injection.head_dim")
    return BlockShape(dim=dim, media_dim=config.media_dim or dim, heads=heads, kv_heads=config.kv_heads or heads,
                      head_dim=head_dim, ff_hidden=config.ff_hidden or 4 * dim, ff=config.ff, norm=config.norm,
                      norm_eps=config.norm_eps, qk_norm=config.qk_norm, gate=config.gate)


@INJECTIONS.register("cross_attention", CrossAttentionConfig)
class CrossAttentionInjector(Injector):
    """Gated cross-attention blocks before chosen decoder layers of ``llm`` (wrapped in place, keys kept).

    Args:
        config: a ``CrossAttentionConfig``.
        llm: the ``transformers`` causal LM; its chosen decoder layers are wrapped once, here.

    Example:
        >>> inj = CrossAttentionInjector(CrossAttentionConfig(every=2), llm); inj.image_token_id = image_id
        >>> out = inj(llm, input_ids, visual, use_cache=True)  # one <image> token per image in input_ids
        >>> out.past_key_values.keys[0].shape  # (B, hk, N_max * V, hd), projected once
    """

    inputs = ("aspect_ratio_ids", "aspect_ratio_mask")  # tiled images (Mllama): the slot layout and real tiles

    def __init__(self, config: CrossAttentionConfig, llm: PreTrainedModel) -> None:
        super().__init__()
        self.config = config
        layers = decoder_layers(llm)
        self.positions = block_positions(config, len(layers))
        shape = block_shape(config, llm)
        self.media_dim = shape.media_dim  # the VLM builds its connector with this out_dim
        self.blocks = nn.ModuleList(GatedCrossAttentionBlock(shape, config.ff_text_rows, config.gate_init)
                                    for _ in self.positions)
        for j, i in enumerate(self.positions):
            if isinstance(layers[i], FusedDecoderLayer):
                raise ValueError(f"decoder layer {i} already has a cross-attention block; build the injection "
                                 "around a fresh LLM")
            layers[i] = FusedDecoderLayer(layers[i], j)

    def placeholder_tokens(self, visual_tokens: int) -> int:
        return 1  # the image is read through cross-attention, not placed in the sequence

    def forward(
        self,
        llm: PreTrainedModel,
        input_ids: torch.Tensor,
        visual: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        image_counts: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        aspect_ratio_ids: torch.Tensor | None = None,
        aspect_ratio_mask: torch.Tensor | None = None,
    ) -> CrossAttentionOutput:
        """``input_ids (B, T)`` (one marker per image), ``visual (N_all, V, Dm)`` -> logits and the cache.

        Tiled images (the Mllama processor's batch): ``aspect_ratio_ids (B, N_max)``, 0 on a slot that pads a
        sample to the batch's most images, and ``visual (B * N_max, V, Dm)`` holds every slot, padded ones
        included, as transformers encodes them; ``aspect_ratio_mask (B, N_max, tiles)``: the real tiles, the only
        keys a token that sees its image reads.
        """
        markers = input_ids == self.image_token_id  # (B, T)
        if past_key_values is None:
            slot_ids = aspect_ratio_ids if visual is not None else None
            counts = check_images(markers, visual, image_counts, slot_ids)
            media, layout = pack_media(visual, counts, self.media_dim, self.blocks_dtype_like(input_ids), markers,
                                       slot_ids, aspect_ratio_mask)
            kv = [block.attn.project_media(media) for block in self.blocks]  # once per sequence
            keys, values = [k for k, _ in kv], [v for _, v in kv]
            seen, inner = torch.zeros_like(counts), None
        elif isinstance(past_key_values, CrossAttentionCache):
            if (visual is not None and visual.shape[0]) or bool(markers.any()):
                raise ValueError("images after the prefill are not supported: give every image (and its <image> "
                                 "marker) in the first call, then continue with past_key_values")
            cache = past_key_values
            keys, values, layout, seen = cache.keys, cache.values, cache.layout, cache.seen
            inner = cache.self_attn
        else:
            raise ValueError(f"past_key_values is a {type(past_key_values).__name__}; the cross_attention injection "
                             "continues only from the CrossAttentionCache its previous call returned")
        mask, rows, ff_rows = media_masks(markers, seen, layout, self.config.media, self.config.unseen_rows)
        context = CrossAttentionContext(self.blocks, keys, values, mask, rows, ff_rows)
        out = llm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  use_cache=use_cache, logits_to_keep=logits_to_keep, **cache_kwargs(inner), **{CONTEXT_KEY: context})
        if not use_cache:
            return CrossAttentionOutput(out.logits)
        seen = seen + markers.sum(dim=1)  # (B,)
        if past_key_values is None and self.config.media == "last" and layout.slots.shape[1] > 1:
            keys, values, layout, seen = keep_last_image(keys, values, seen, layout)  # later tokens read no other
        return CrossAttentionOutput(out.logits, CrossAttentionCache(output_cache(out), keys, values, layout, seen))

    def blocks_dtype_like(self, input_ids: torch.Tensor) -> torch.Tensor:
        """An empty tensor on the input's device in the blocks' dtype (for an image-free batch's empty media)."""
        dtype = self.blocks[0].attn_gate.dtype if len(self.blocks) else torch.float32
        return torch.empty(0, device=input_ids.device, dtype=dtype)
