"""Load ``transformers`` connector weights into vlfuse connectors (Idefics, Idefics2 perceivers; Idefics3 shuffle).

Each loader takes a state dict (the HF module's own keys, or a whole checkpoint's with ``prefix`` naming the
module, e.g. ``"model.connector."``) and the HF model config, builds the equivalent vlfuse connector, maps the keys
and loads strictly: a key without a vlfuse slot, or a vlfuse weight left unset, raises. Parity is tested in
``tests/parity/test_perceiver_parity.py`` and ``tests/parity/test_idefics3_connector.py``.
Shapes: ``Dv`` vision width, ``Dt`` LLM width (only the weights move; the connectors' modules give shapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vlfuse.connectors.perceiver import PerceiverConfig, PerceiverResampler
from vlfuse.connectors.pixel_shuffle import PixelShuffleConfig, PixelShuffleConnector
from vlfuse.convert import rename

# per perceiver layer: (transformers key prefix, vlfuse key prefix), relative to the layer
_IDEFICS_LAYER = [("0.context_layer_norm.", "media_norm."), ("0.latents_layer_norm.", "latent_norm."),
                  ("0.q_layer_norm.", "attn.q_norm."), ("0.k_layer_norm.", "attn.k_norm."), ("0.q_proj.", "attn.q."),
                  ("0.k_proj.", "attn.k."), ("0.v_proj.", "attn.v."), ("0.output_proj.", "attn.o."),
                  ("1.ln.", "ff_norm."), ("1.fc.", "ff.up."), ("1.c_proj.", "ff.down.")]
_IDEFICS2_LAYER = [("input_latents_norm.", "latent_norm."), ("input_context_norm.", "media_norm."),
                   ("self_attn.q_proj.", "attn.q."), ("self_attn.k_proj.", "attn.k."), ("self_attn.v_proj.", "attn.v."),
                   ("self_attn.o_proj.", "attn.o."), ("post_attention_layernorm.", "ff_norm."),
                   ("mlp.gate_proj.", "ff.gate."), ("mlp.up_proj.", "ff.up."), ("mlp.down_proj.", "ff.down.")]
_SWIGLU = [("gate_proj.", "gate."), ("up_proj.", "up."), ("down_proj.", "down.")]


def _select(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"no weight starts with prefix {prefix!r}; give the connector's own state dict or the "
                         f"prefix of its keys (first keys: {list(state)[:3]})")
    return out


def _layers(depth: int, hf: str, ours: str, table: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Prefix pairs for ``depth`` layers: ``hf{i}.a`` -> ``ours{i}.b`` for each ``(a, b)`` in ``table``."""
    return [(f"{hf}{i}.{a}", f"{ours}{i}.{b}") for i in range(depth) for a, b in table]


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor]) -> Any:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights do not fit the {type(module).__name__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}; is the config the one these weights were saved with?")
    return module


def _require_silu(**acts: str) -> None:
    for name, act in acts.items():
        if act != "silu":
            raise ValueError(f"{name}={act!r}: the vlfuse idefics2 perceiver uses SwiGLU with silu only")


def load_idefics_perceiver(state_dict: Mapping[str, torch.Tensor], config: Any, prefix: str = "") -> PerceiverResampler:
    """``IdeficsPerceiverResampler`` weights (``IdeficsConfig`` ``config``) -> a ``perceiver`` of variant idefics.

    The perceiver runs at the vision width ``Dv = config.vision_config.embed_dim`` and so does its output
    (``out_dim = Dv``: no projection, as Idefics, which feeds the latents to its cross-attention).

    Example:
        >>> hf = IdeficsPerceiverResampler(cfg, cfg.vision_config.embed_dim, 2, 2, 16, 8)
        >>> ours = load_idefics_perceiver(hf.state_dict(), cfg)
    """
    ours, dim = idefics_perceiver_config(config), config.vision_config.embed_dim
    state = rename(_select(state_dict, prefix), idefics_perceiver_keys(ours.depth))
    return _load_strict(PerceiverResampler(ours, in_dim=dim, out_dim=dim), state)


def idefics_perceiver_config(config: Any) -> PerceiverConfig:
    """The ``perceiver`` config equal to an ``IdeficsConfig``'s resampler."""
    pc = config.perceiver_config
    return PerceiverConfig(variant="idefics", n_latents=pc.resampler_n_latents, depth=pc.resampler_depth,
                           heads=pc.resampler_n_heads, head_dim=pc.resampler_head_dim, ff_mult=4, max_frames=0,
                           qk_norm=pc.qk_layer_norms_perceiver)


def idefics_perceiver_keys(depth: int, hf: str = "", ours: str = "") -> list[tuple[str, str]]:
    """``(transformers prefix, vlfuse prefix)`` pairs of an ``IdeficsPerceiverResampler`` of ``depth`` layers."""
    table = [(f"{hf}latents", f"{ours}latents"), (f"{hf}layer_norm.", f"{ours}norm.")]
    return table + _layers(depth, f"{hf}blocks.", f"{ours}layers.", _IDEFICS_LAYER)


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
    table += _layers(ours.depth, "perceiver_resampler.layers.", "layers.", _IDEFICS2_LAYER)
    state = rename(_select(state_dict, prefix), table)
    module = PerceiverResampler(ours, in_dim=config.vision_config.hidden_size, out_dim=text.hidden_size)
    return _load_strict(module, state)


def load_idefics3_connector(state_dict: Mapping[str, torch.Tensor], config: Any,
                            prefix: str = "") -> PixelShuffleConnector:
    """``Idefics3Connector`` weights (``Idefics3Config`` ``config``) -> a ``pixelshuffle`` connector.

    Ratio ``config.scale_factor``, one bias-free linear ``Dv * r^2 -> Dt``.
    """
    ours = PixelShuffleConfig(ratio=config.scale_factor, depth=1, bias=False)
    state = rename(_select(state_dict, prefix), [("modality_projection.proj.", "proj.linear_1.")])
    dims = {"in_dim": config.vision_config.hidden_size, "out_dim": config.text_config.hidden_size}
    module = PixelShuffleConnector(ours, **dims)
    return _load_strict(module, state)
