"""Llama 3.2 Vision (``transformers.MllamaForConditionalGeneration``) -> vlfuse, tiled images.

Mllama interleaves gated cross-attention layers with the Llama's self-attention layers in one list; vlfuse keeps
the self-attention layers as a ``LlamaForCausalLM`` and runs each cross-attention layer as a ``cross_attention``
block before the next one. Images are tiled as ``MllamaImageProcessor`` tiles them (``vlfuse.data.tiles``); a token
reads the most recent run of adjacent images (``media: group``), as ``MllamaProcessor``'s cross-attention mask.
Parity: ``tests/parity/test_mllama.py``.
Shapes: ``Dt`` LLM width.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PretrainedConfig

from vlfuse.connectors.linear import LinearConfig
from vlfuse.convert.common import Converted, converter, rename, require, tokenizer
from vlfuse.convert.processor import image_processor_dict
from vlfuse.data.tokenizer import TokenizerConfig
from vlfuse.encoders.mllama_vision import MllamaVisionEncoderConfig
from vlfuse.injection.cross_attention import CrossAttentionConfig
from vlfuse.llm import LLMConfig
from vlfuse.loading import read_safetensors
from vlfuse.model import VLMConfig

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


def _resample(directory: Path, hf: PretrainedConfig) -> int:
    """The saved image processor's PIL filter; refuses one that tiles differently from the vision tower."""
    data = image_processor_dict(directory)[0] or {}
    tiles = data.get("max_image_tiles", hf.vision_config.max_num_tiles)
    require(tiles == hf.vision_config.max_num_tiles, f"preprocessor_config.json max_image_tiles={tiles} but the "
            f"vision tower has max_num_tiles={hf.vision_config.max_num_tiles}; save the processor of this model")
    require(data.get("do_rescale", True) and data.get("rescale_factor", 1 / 255) == 1 / 255,
            "the image processor rescales pixels other than by 1/255; vlfuse's tiling transform rescales by 1/255")
    return int(data.get("resample", 2))


@converter("mllama")
def convert_mllama(directory: Path, hf: PretrainedConfig) -> Converted:
    """``MllamaForConditionalGeneration`` (Llama 3.2 Vision) -> the equivalent ``VLM`` (tiled images).

    The embedding has 8 rows past the head's vocabulary (Mllama's ``vocab_size + 8``, e.g. ``<|image|>``); the
    LLM's head gets 8 zero rows there, so those ids score 0 and the first ``vocab_size`` logits are Mllama's.
    A token before the first image reads every image slot of its sample (padded tiles and slots included) and its
    FFW output is zeroed, as ``transformers`` does (``unseen_rows: all_images``, ``ff_text_rows: false``).
    """
    text = hf.text_config
    require(text.hidden_act == "silu", f"hidden_act={text.hidden_act!r}: the vlfuse SwiGLU blocks use silu only")
    cross = list(text.cross_attention_layers)
    selfs, before = mllama_layer_plan(text.num_hidden_layers, cross)
    tok, image_token = tokenizer(directory, hf.image_token_index)
    llm = {"model_type": "llama", "vocab_size": text.vocab_size + 8, "hidden_size": text.hidden_size,
           "intermediate_size": text.intermediate_size, "num_hidden_layers": len(selfs),
           "num_attention_heads": text.num_attention_heads, "num_key_value_heads": text.num_key_value_heads,
           "hidden_act": "silu", "rms_norm_eps": text.rms_norm_eps,
           "max_position_embeddings": text.max_position_embeddings, "rope_parameters": dict(text.rope_parameters),
           "tie_word_embeddings": False, "attention_bias": False, "pad_token_id": text.pad_token_id,
           "bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id}
    config = VLMConfig(
        encoder=MllamaVisionEncoderConfig(config=hf.vision_config.to_dict(), resample=_resample(directory, hf)),
        connector=LinearConfig(bias=True),
        injection=CrossAttentionConfig(
            layers=tuple(before), media="group", heads=text.num_attention_heads, kv_heads=text.num_key_value_heads,
            head_dim=text.hidden_size // text.num_attention_heads, ff="swiglu", ff_hidden=text.intermediate_size,
            norm="rmsnorm", norm_eps=text.rms_norm_eps, qk_norm=True, gate="scalar", ff_text_rows=False,
            unseen_rows="all_images"),
        llm=LLMConfig(config=llm),
        tokenizer=TokenizerConfig(image_token=image_token, bos_after_images=True),
    )
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
    return Converted(config, tok, rename(state, table))
