"""IDEFICS (``transformers.IdeficsForVisionText2Text``) -> vlfuse, and its perceiver's weights alone.

IDEFICS (Laurencon et al., 2023, arXiv:2306.16527; Flamingo's open reproduction) is ``vision tower -> perceiver
(at the vision width) -> gated cross-attention before every cross_layer_interval-th layer of a Llama``; each maps
onto a vlfuse slot:

- ``model.vision_model`` -> ``idefics_vision`` encoder (the ``transformers`` module itself);
- ``model.perceiver_resampler`` -> ``perceiver`` (variant ``idefics``, ``out_dim = Dv``: no projection);
- ``model.gated_cross_attn_layers`` -> ``cross_attention`` (``every = cross_layer_interval``, RMSNorm, SwiGLU FFW,
  ``media_dim = Dv``, gates ``alpha_cross_attn`` / ``alpha_dense``, float or vector);
- ``model.layers``, ``model.norm``, ``model.embed_tokens``, ``lm_head`` -> a ``LlamaForCausalLM``; the decoupled
  additional vocabulary (``additional_embedding``, ``additional_fc``) becomes rows after the base vocabulary.

The image attention mask is computed from the ``<image>`` markers (``media: last``: each token reads the most recent
image at or before it, as IDEFICS' processor builds it; its reset after an end-of-document token in packed
sequences is not reproduced). Parity: ``tests/parity/test_idefics.py``, ``tests/parity/test_perceiver_parity.py``.
Shapes: ``Dv`` vision width, ``Dt`` LLM width, ``W`` base vocabulary, ``A`` additional vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from vlfuse.connectors.perceiver import PerceiverConfig, PerceiverResampler
from vlfuse.convert.common import Converted, converter, layer_keys, load_strict, rename, require, select, tokenizer
from vlfuse.data.tokenizer import TokenizerConfig
from vlfuse.encoders.idefics_vision import IdeficsVisionEncoderConfig
from vlfuse.injection.cross_attention import CrossAttentionConfig
from vlfuse.llm import LLMConfig
from vlfuse.loading import read_safetensors
from vlfuse.model import VLMConfig

# per perceiver layer: (transformers key prefix, vlfuse key prefix), relative to the layer
_IDEFICS_LAYER = [("0.context_layer_norm.", "media_norm."), ("0.latents_layer_norm.", "latent_norm."),
                  ("0.q_layer_norm.", "attn.q_norm."), ("0.k_layer_norm.", "attn.k_norm."), ("0.q_proj.", "attn.q."),
                  ("0.k_proj.", "attn.k."), ("0.v_proj.", "attn.v."), ("0.output_proj.", "attn.o."),
                  ("1.ln.", "ff_norm."), ("1.fc.", "ff.up."), ("1.c_proj.", "ff.down.")]
# per IDEFICS gated cross-attention layer: (transformers prefix, vlfuse prefix) relative to the layer / block
_IDEFICS_XATTN = [("cross_attn.q_proj.", "attn.q_proj."), ("cross_attn.k_proj.", "attn.k_proj."),
                  ("cross_attn.v_proj.", "attn.v_proj."), ("cross_attn.o_proj.", "attn.o_proj."),
                  ("cross_attn.q_layer_norm.", "attn.q_norm."), ("cross_attn.k_layer_norm.", "attn.k_norm."),
                  ("mlp.gate_proj.", "ff.gate."), ("mlp.up_proj.", "ff.up."), ("mlp.down_proj.", "ff.down."),
                  ("input_layernorm.", "attn_norm."), ("post_attention_layernorm.", "ff_norm."),
                  ("alpha_cross_attn", "attn_gate"), ("alpha_dense", "ff_gate")]



def load_idefics_perceiver(state_dict: Mapping[str, torch.Tensor], config: Any, prefix: str = "") -> PerceiverResampler:
    """``IdeficsPerceiverResampler`` weights (``IdeficsConfig`` ``config``) -> a ``perceiver`` of variant idefics.

    The perceiver runs at the vision width ``Dv = config.vision_config.embed_dim`` and so does its output
    (``out_dim = Dv``: no projection, as Idefics, which feeds the latents to its cross-attention).

    Example:
        >>> hf = IdeficsPerceiverResampler(cfg, cfg.vision_config.embed_dim, 2, 2, 16, 8)
        >>> ours = load_idefics_perceiver(hf.state_dict(), cfg)
    """
    ours, dim = idefics_perceiver_config(config), config.vision_config.embed_dim
    state = rename(select(state_dict, prefix), idefics_perceiver_keys(ours.depth))
    return load_strict(PerceiverResampler(ours, in_dim=dim, out_dim=dim), state)


def idefics_perceiver_config(config: Any) -> PerceiverConfig:
    """The ``perceiver`` config equal to an ``IdeficsConfig``'s resampler."""
    pc = config.perceiver_config
    return PerceiverConfig(variant="idefics", n_latents=pc.resampler_n_latents, depth=pc.resampler_depth,
                           heads=pc.resampler_n_heads, head_dim=pc.resampler_head_dim, ff_mult=4, max_frames=0,
                           qk_norm=pc.qk_layer_norms_perceiver)


def idefics_perceiver_keys(depth: int, hf: str = "", ours: str = "") -> list[tuple[str, str]]:
    """``(transformers prefix, vlfuse prefix)`` pairs of an ``IdeficsPerceiverResampler`` of ``depth`` layers."""
    table = [(f"{hf}latents", f"{ours}latents"), (f"{hf}layer_norm.", f"{ours}norm.")]
    return table + layer_keys(depth, f"{hf}blocks.", f"{ours}layers.", _IDEFICS_LAYER)


def _idefics_llm(hf: PretrainedConfig) -> dict[str, Any]:
    """The Llama config equal to IDEFICS' text decoder (base + additional vocabulary)."""
    rope = dict(hf.rope_parameters or {"rope_type": "default", "rope_theta": 10000.0})
    return {"model_type": "llama", "vocab_size": hf.vocab_size + hf.additional_vocab_size,
            "hidden_size": hf.hidden_size, "intermediate_size": hf.intermediate_size,
            "num_hidden_layers": hf.num_hidden_layers, "num_attention_heads": hf.num_attention_heads,
            "num_key_value_heads": hf.num_attention_heads, "hidden_act": hf.hidden_act,
            "rms_norm_eps": hf.rms_norm_eps, "max_position_embeddings": hf.max_position_embeddings,
            "rope_parameters": rope, "tie_word_embeddings": bool(hf.tie_word_embeddings), "attention_bias": False,
            "pad_token_id": hf.pad_token_id, "bos_token_id": hf.bos_token_id, "eos_token_id": hf.eos_token_id}


def _merge_decoupled(state: dict[str, torch.Tensor]) -> None:
    """Append the additional vocabulary rows (embedding and head) after the base ones, in place."""
    for base, extra in (("model.embed_tokens.weight", "model.embed_tokens.additional_embedding.weight"),
                        ("lm_head.weight", "lm_head.additional_fc.weight")):
        if extra in state:
            state[base] = torch.cat([state[base], state.pop(extra)], dim=0)  # (W + A, Dt)


@converter("idefics")
def convert_idefics(directory: Path, hf: PretrainedConfig) -> Converted:
    """``IdeficsForVisionText2Text`` (IDEFICS-9B / 80B layout) -> the equivalent ``VLM``."""
    require(hf.use_resampler, "IDEFICS without its perceiver (use_resampler=false) has no vlfuse connector yet; "
                              "only the released layout (use_resampler=true) converts")
    require(hf.hidden_act == "silu", f"hidden_act={hf.hidden_act!r}: the vlfuse SwiGLU blocks use silu only")
    require(hf.num_hidden_layers % hf.cross_layer_interval == 0,
            f"num_hidden_layers={hf.num_hidden_layers} is not a multiple of cross_layer_interval="
            f"{hf.cross_layer_interval}; transformers' IDEFICS itself cannot run that layout")
    tok, _ = tokenizer(directory, 0)
    require("<image>" in tok.get_vocab(), f"the tokenizer in {str(directory)!r} has no <image> token")
    dv = hf.vision_config.embed_dim
    pc = idefics_perceiver_config(hf)
    config = VLMConfig(
        encoder=IdeficsVisionEncoderConfig(config=hf.vision_config.to_dict()),
        connector=pc,
        injection=CrossAttentionConfig(
            every=hf.cross_layer_interval, media="last", heads=hf.num_attention_heads,
            head_dim=hf.hidden_size // hf.num_attention_heads, media_dim=dv, ff="swiglu",
            ff_hidden=hf.intermediate_size, norm="rmsnorm", norm_eps=hf.rms_norm_eps, qk_norm=hf.qk_layer_norms,
            gate="vector" if hf.alpha_type == "vector" else "scalar", ff_text_rows=True),
        llm=LLMConfig(config=_idefics_llm(hf)),
        tokenizer=TokenizerConfig(image_token="<image>"),
    )
    state = read_safetensors(directory)
    _merge_decoupled(state)
    n_blocks = hf.num_hidden_layers // hf.cross_layer_interval
    table = [("model.vision_model.", "encoder.tower.")]
    table += idefics_perceiver_keys(pc.depth, "model.perceiver_resampler.", "connector.")
    table += [(f"model.gated_cross_attn_layers.{j}.{a}", f"injector.blocks.{j}.{b}")
              for j in range(n_blocks) for a, b in _IDEFICS_XATTN]
    table += [("model.layers.", "llm.model.layers."), ("model.norm.", "llm.model.norm."),
              ("model.embed_tokens.", "llm.model.embed_tokens."), ("lm_head.", "llm.lm_head.")]
    state = rename(state, table)
    for key in [k for k in state if k.startswith("injector.") and k.endswith("_gate")]:
        state[key] = state[key].reshape(-1)  # (1,) float gate or (1, 1, Dt) vector gate -> (1,) / (Dt,)
    return Converted(config, tok, state)
