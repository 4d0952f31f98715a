"""``VLM.from_transformers`` for the cross-attention families: IDEFICS (``IdeficsForVisionText2Text``).

IDEFICS is ``vision tower -> perceiver (at the vision width) -> gated cross-attention before every
cross_layer_interval-th layer of a Llama``; each maps onto a vlfuse slot:

- ``model.vision_model`` -> ``idefics_vision`` encoder (the ``transformers`` module itself);
- ``model.perceiver_resampler`` -> ``perceiver`` (variant ``idefics``, ``out_dim = Dv``: no projection);
- ``model.gated_cross_attn_layers`` -> ``cross_attention`` (``every = cross_layer_interval``, RMSNorm, SwiGLU FFW,
  ``media_dim = Dv``, gates ``alpha_cross_attn`` / ``alpha_dense``, float or vector);
- ``model.layers``, ``model.norm``, ``model.embed_tokens``, ``lm_head`` -> a ``LlamaForCausalLM``; the decoupled
  additional vocabulary (``additional_embedding``, ``additional_fc``) becomes rows after the base vocabulary.

The image attention mask is computed from the ``<image>`` markers (``media: last``: each token reads the most recent
image at or before it, as IDEFICS' processor builds it; its reset after an end-of-document token in packed
sequences is not reproduced). Weights are read with safetensors and loaded strictly.
Shapes: ``Dv`` vision width, ``Dt`` LLM width, ``W`` base vocabulary, ``A`` additional vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from vlfuse.convert import _tokenizer, converter, load_converted, read_safetensors, rename
from vlfuse.convert_connectors import idefics_perceiver_config, idefics_perceiver_keys

# per IDEFICS gated cross-attention layer: (transformers prefix, vlfuse prefix) relative to the layer / block
_IDEFICS_XATTN = [("cross_attn.q_proj.", "attn.q_proj."), ("cross_attn.k_proj.", "attn.k_proj."),
                  ("cross_attn.v_proj.", "attn.v_proj."), ("cross_attn.o_proj.", "attn.o_proj."),
                  ("cross_attn.q_layer_norm.", "attn.q_norm."), ("cross_attn.k_layer_norm.", "attn.k_norm."),
                  ("mlp.gate_proj.", "ff.gate."), ("mlp.up_proj.", "ff.up."), ("mlp.down_proj.", "ff.down."),
                  ("input_layernorm.", "attn_norm."), ("post_attention_layernorm.", "ff_norm."),
                  ("alpha_cross_attn", "attn_gate"), ("alpha_dense", "ff_gate")]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


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
def _idefics(directory: Path, hf: PretrainedConfig) -> Any:
    """``IdeficsForVisionText2Text`` (IDEFICS-9B / 80B layout) -> the equivalent ``VLM``."""
    from vlfuse.data.tokenizer import TokenizerConfig
    from vlfuse.encoders.idefics_vision import IdeficsVisionEncoderConfig
    from vlfuse.injection.cross_attention import CrossAttentionConfig
    from vlfuse.llm import LLMConfig
    from vlfuse.model import VLM, VLMConfig

    _require(hf.use_resampler, "IDEFICS without its perceiver (use_resampler=false) has no vlfuse connector yet; "
                               "only the released layout (use_resampler=true) converts")
    _require(hf.hidden_act == "silu", f"hidden_act={hf.hidden_act!r}: the vlfuse SwiGLU blocks use silu only")
    _require(hf.num_hidden_layers % hf.cross_layer_interval == 0,
             f"num_hidden_layers={hf.num_hidden_layers} is not a multiple of cross_layer_interval="
             f"{hf.cross_layer_interval}; transformers' IDEFICS itself cannot run that layout")
    tok, _ = _tokenizer(directory, 0)
    _require("<image>" in tok.get_vocab(), f"the tokenizer in {str(directory)!r} has no <image> token")
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
    model = VLM.from_config(config, tokenizer=tok)
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
    load_converted(model, state)
    return model


# per Mllama cross-attention decoder layer: (transformers prefix, vlfuse prefix) relative to the layer / block
_MLLAMA_XATTN = [("cross_attn.q_proj.", "attn.q_proj."), ("cross_attn.k_proj.", "attn.k_proj."),
                 ("cross_attn.v_proj.", "attn.v_proj."), ("cross_attn.o_proj.", "attn.o_proj."),
                 ("cross_attn.q_norm.", "attn.q_norm."), ("cross_attn.k_norm.", "attn.k_norm."),
                 ("mlp.gate_proj.", "ff.gate."), ("mlp.up_proj.", "ff.up."), ("mlp.down_proj.", "ff.down."),
                 ("input_layernorm.", "attn_norm."), ("post_attention_layernorm.", "ff_norm."),
                 ("cross_attn_attn_gate", "attn_gate"), ("cross_attn_mlp_gate", "ff_gate")]


def mllama_layer_plan(n_layers: int, cross: list[int]) -> tuple[list[int], list[int]]:
    """``(self-attention layer indices in Mllama's list, LLM layer each cross-attention layer runs before)``.

    Mllama interleaves both kinds in one list; vlfuse's LLM holds the self-attention layers only, and a block
    runs before the next one: e.g. 5 layers with cross layers ``[1, 3]`` -> LLM layers ``[0, 2, 4]``, blocks
    before LLM layers ``[1, 2]``.
    """
    selfs = [i for i in range(n_layers) if i not in cross]
    before = [sum(1 for s in selfs if s < i) for i in sorted(cross)]
    if before and before[-1] >= len(selfs):
        raise ValueError(f"cross_attention_layers={cross} ends with the last layer; vlfuse runs each "
                         "cross-attention layer before a self-attention layer")
    return selfs, before


@converter("mllama")
def _mllama(directory: Path, hf: PretrainedConfig) -> Any:
    """``MllamaForConditionalGeneration`` (Llama 3.2 Vision) -> the equivalent ``VLM`` (one tile per image).

    The embedding has 8 rows past the head's vocabulary (Mllama's ``vocab_size + 8``, e.g. ``<|image|>``); the
    LLM's head gets 8 zero rows there, so those ids score 0 and the first ``vocab_size`` logits are Mllama's.
    A token before the first image reads every image of its sample and its FFW output is zeroed, as
    ``transformers`` does (``unseen_rows: all_images``, ``ff_text_rows: false``).
    """
    from vlfuse.connectors.linear import LinearConfig
    from vlfuse.data.tokenizer import TokenizerConfig
    from vlfuse.encoders.mllama_vision import MllamaVisionEncoderConfig
    from vlfuse.injection.cross_attention import CrossAttentionConfig
    from vlfuse.llm import LLMConfig
    from vlfuse.model import VLM, VLMConfig

    text = hf.text_config
    _require(text.hidden_act == "silu", f"hidden_act={text.hidden_act!r}: the vlfuse SwiGLU blocks use silu only")
    cross = list(text.cross_attention_layers)
    selfs, before = mllama_layer_plan(text.num_hidden_layers, cross)
    tok, image_token = _tokenizer(directory, hf.image_token_index)
    llm = {"model_type": "llama", "vocab_size": text.vocab_size + 8, "hidden_size": text.hidden_size,
           "intermediate_size": text.intermediate_size, "num_hidden_layers": len(selfs),
           "num_attention_heads": text.num_attention_heads, "num_key_value_heads": text.num_key_value_heads,
           "hidden_act": "silu", "rms_norm_eps": text.rms_norm_eps,
           "max_position_embeddings": text.max_position_embeddings, "rope_parameters": dict(text.rope_parameters),
           "tie_word_embeddings": False, "attention_bias": False, "pad_token_id": text.pad_token_id,
           "bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id}
    config = VLMConfig(
        encoder=MllamaVisionEncoderConfig(config=hf.vision_config.to_dict()),
        connector=LinearConfig(bias=True),
        injection=CrossAttentionConfig(
            layers=tuple(before), media="last", heads=text.num_attention_heads, kv_heads=text.num_key_value_heads,
            head_dim=text.hidden_size // text.num_attention_heads, ff="swiglu", ff_hidden=text.intermediate_size,
            norm="rmsnorm", norm_eps=text.rms_norm_eps, qk_norm=True, gate="scalar", ff_text_rows=False,
            unseen_rows="all_images"),
        llm=LLMConfig(config=llm),
        tokenizer=TokenizerConfig(image_token=image_token),
    )
    model = VLM.from_config(config, tokenizer=tok)
    # transformers saves Mllama in its original layout (language_model.model., vision_model., ...): read both
    state = rename(read_safetensors(directory), [
        ("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
        ("vision_model.", "model.vision_model."), ("multi_modal_projector.", "model.multi_modal_projector."),
        ("model.", "model."), ("lm_head.", "lm_head.")])
    head = state["lm_head.weight"]
    state["lm_head.weight"] = torch.cat([head, head.new_zeros(8, head.shape[1])])  # (vocab + 8, Dt)
    lm = "model.language_model."
    table = [("model.vision_model.", "encoder.tower."), ("model.multi_modal_projector.", "connector.proj."),
             (f"{lm}embed_tokens.", "llm.model.embed_tokens."), (f"{lm}norm.", "llm.model.norm."),
             ("lm_head.", "llm.lm_head.")]
    table += [(f"{lm}layers.{i}.{a}", f"injector.blocks.{j}.{b}") for j, i in enumerate(sorted(cross))
              for a, b in _MLLAMA_XATTN]
    table += [(f"{lm}layers.{i}.", f"llm.model.layers.{k}.") for k, i in enumerate(selfs)]
    load_converted(model, rename(state, table))
    return model
