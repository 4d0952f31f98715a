"""Idefics2 / Idefics3 connector weights (``transformers`` ``Idefics2Connector``, ``Idefics3Connector``) -> vlfuse.

Each loader takes a state dict (the HF module's own keys, or a whole checkpoint's with ``prefix`` naming the
module, e.g. ``"model.connector."``) and the HF model config, builds the equivalent vlfuse connector, maps the keys
and loads strictly: a key without a vlfuse slot, or a vlfuse weight left unset, raises. Idefics2: Laurencon et al.,
2024 (arXiv:2405.02246); Idefics3: arXiv:2408.12637. Parity: ``tests/parity/test_perceiver_parity.py``,
``tests/parity/test_idefics3_connector.py``.
Shapes: ``Dv`` vision width, ``Dt`` LLM width (only the weights move; the connectors' modules give shapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from vlfuse.connectors.perceiver import PerceiverConfig, PerceiverResampler
from vlfuse.connectors.pixel_shuffle import PixelShuffleConfig, PixelShuffleConnector
from vlfuse.convert.common import layer_keys, load_strict, rename, select

_IDEFICS2_LAYER = [("input_latents_norm.", "latent_norm."), ("input_context_norm.", "media_norm."),
                   ("self_attn.q_proj.", "attn.q."), ("self_attn.k_proj.", "attn.k."), ("self_attn.v_proj.", "attn.v."),
                   ("self_attn.o_proj.", "attn.o."), ("post_attention_layernorm.", "ff_norm."),
                   ("mlp.gate_proj.", "ff.gate."), ("mlp.up_proj.", "ff.up."), ("mlp.down_proj.", "ff.down.")]
_SWIGLU = [("gate_proj.", "gate."), ("up_proj.", "up."), ("down_proj.", "down.")]



def _require_silu(**acts: str) -> None:
    for name, act in acts.items():
        if act != "silu":
            raise ValueError(f"{name}={act!r}: the vlfuse idefics2 perceiver uses SwiGLU with silu only")


def load_idefics2_connector(state_dict: Mapping[str, torch.Tensor], config: Any,
                            prefix: str = "") -> PerceiverResampler:
    """``Idefics2Connector`` weights (``Idefics2Config`` ``config``) -> a ``perceiver`` of variant idefics2.

    The SwiGLU ``modality_projection`` (``Dv -> Dt``, hidden ``text_config.intermediate_size``) becomes
    ``in_proj``; the ``perceiver_resampler`` (width ``Dt``, grouped-query attention) the rest.
    """
    pc, text = config.perceiver_config, config.text_config
    _require_silu(**{"text_config.hidden_act": text.hidden_act, "perceiver_config.hidden_act": pc.hidden_act})
    if pc.hidden_size != text.hidden_size:
        raise ValueError(f"perceiver_config.hidden_size={pc.hidden_size} differs from text_config.hidden_size="
                         f"{text.hidden_size}; Idefics2 runs its perceiver at the LLM width")
    ours = PerceiverConfig(variant="idefics2", n_latents=pc.resampler_n_latents, depth=pc.resampler_depth,
                           heads=pc.resampler_n_heads, head_dim=pc.resampler_head_dim, kv_heads=pc.num_key_value_heads,
                           ff_mult=4, max_frames=0, norm_eps=pc.rms_norm_eps, proj_hidden_dim=text.intermediate_size)
    table = [(f"modality_projection.{a}", f"in_proj.{b}") for a, b in _SWIGLU]
    table += [("perceiver_resampler.latents", "latents"), ("perceiver_resampler.norm.", "norm.")]
    table += layer_keys(ours.depth, "perceiver_resampler.layers.", "layers.", _IDEFICS2_LAYER)
    state = rename(select(state_dict, prefix), table)
    module = PerceiverResampler(ours, in_dim=config.vision_config.hidden_size, out_dim=text.hidden_size)
    return load_strict(module, state)


def load_idefics3_connector(state_dict: Mapping[str, torch.Tensor], config: Any,
                            prefix: str = "") -> PixelShuffleConnector:
    """``Idefics3Connector`` weights (``Idefics3Config`` ``config``) -> a ``pixelshuffle`` connector.

    Ratio ``config.scale_factor``, one bias-free linear ``Dv * r^2 -> Dt``.
    """
    ours = PixelShuffleConfig(ratio=config.scale_factor, depth=1, bias=False)
    state = rename(select(state_dict, prefix), [("modality_projection.proj.", "proj.linear_1.")])
    dims = {"in_dim": config.vision_config.hidden_size, "out_dim": config.text_config.hidden_size}
    module = PixelShuffleConnector(ours, **dims)
    return load_strict(module, state)
