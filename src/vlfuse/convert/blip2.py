"""BLIP-2 (``transformers.Blip2*``) -> vlfuse: the Q-Former loader and ``Blip2ForConditionalGeneration``'s converter.

``load_blip2_qformer`` takes the state dict of any BLIP-2 model in transformers' layout
(``Blip2ForConditionalGeneration``, ``Blip2ForImageTextRetrieval``, or ``{"query_tokens": ..., "qformer.<key>":
...}`` around a ``Blip2QFormerModel``) and its ``Blip2Config``, builds the equivalent ``qformer`` connector, maps
the keys and loads strictly. Only weights transformers has no counterpart for may stay at their initialisation:
the ITC temperature and the ITG LM head (transformers' retrieval model has neither), and the LLM projection when
the checkpoint has no ``language_projection``.
Li et al., 2023 (arXiv:2301.12597). Parity: ``tests/parity/test_qformer_parity.py``, ``tests/parity/test_blip2.py``.
Shapes: ``Q`` queries, ``H`` Q-Former width (only weights move here).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from vlfuse.connectors.qformer import QFormer, QFormerConfig
from vlfuse.convert.common import Converted, converter, rename, require, tokenizer
from vlfuse.data.tokenizer import TokenizerConfig
from vlfuse.encoders.blip2_vision import Blip2VisionEncoderConfig
from vlfuse.injection.concat import ConcatConfig
from vlfuse.llm import LLMConfig
from vlfuse.loading import read_safetensors
from vlfuse.model import VLMConfig

_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
# per Q-Former layer: (transformers prefix, vlfuse prefix), relative to the layer
_LAYER = [("attention.attention.query.", "self_attn.q."), ("attention.attention.key.", "self_attn.k."),
          ("attention.attention.value.", "self_attn.v."), ("attention.output.dense.", "self_attn.o."),
          ("attention.output.LayerNorm.", "self_attn.norm."),
          ("crossattention.attention.query.", "cross_attn.q."), ("crossattention.attention.key.", "cross_attn.k."),
          ("crossattention.attention.value.", "cross_attn.v."), ("crossattention.output.dense.", "cross_attn.o."),
          ("crossattention.output.LayerNorm.", "cross_attn.norm."),
          ("intermediate_query.dense.", "ff_query.up."), ("output_query.dense.", "ff_query.down."),
          ("output_query.LayerNorm.", "ff_query.norm."), ("intermediate.dense.", "ff_text.up."),
          ("output.dense.", "ff_text.down."), ("output.LayerNorm.", "ff_text.norm.")]
_TOP = [("qformer.layernorm.", "embed_norm."), ("embeddings.word_embeddings.", "word_emb."),
        ("embeddings.position_embeddings.", "pos_emb."), ("language_projection.", "proj."),
        ("vision_projection.", "heads.vision_proj."), ("text_projection.", "heads.text_proj."),
        ("itm_head.", "heads.itm."), ("query_tokens", "query_tokens")]
_NO_HF_COUNTERPART = ("heads.temp", "heads.lm_dense.", "heads.lm_norm.", "heads.lm_bias")


def qformer_config(config: Any, instruction: bool = False) -> QFormerConfig:
    """The ``QFormerConfig`` equal to a ``Blip2Config``'s Q-Former (text path when ``use_qformer_text_input``), or
    with ``instruction`` to an ``InstructBlipConfig``'s (its text path reads the prompt)."""
    qc = config.qformer_config
    text = instruction or qc.use_qformer_text_input
    itc = getattr(config, "image_text_hidden_size", QFormerConfig.embed_dim)  # InstructBLIP has no ITC heads
    if qc.hidden_act not in _ACTS:
        raise ValueError(f"qformer_config.hidden_act={qc.hidden_act!r} is not supported; choices: {list(_ACTS)}")
    return QFormerConfig(hidden_size=qc.hidden_size, layers=qc.num_hidden_layers, heads=qc.num_attention_heads,
                         intermediate_size=qc.intermediate_size, num_queries=config.num_query_tokens,
                         cross_attention_frequency=qc.cross_attention_frequency,
                         vocab_size=qc.vocab_size if text else 0, instruction=instruction,
                         max_text_positions=qc.max_position_embeddings, embed_dim=itc,
                         dropout=qc.hidden_dropout_prob, layer_norm_eps=qc.layer_norm_eps,
                         activation=_ACTS[qc.hidden_act])  # type: ignore[arg-type]


def load_blip2_qformer(state_dict: Mapping[str, torch.Tensor], config: Any, out_dim: int | None = None,
                       prefix: str = "", instruction: bool = False) -> QFormer:
    """A ``qformer`` connector holding the BLIP-2 weights in ``state_dict`` (keys under ``prefix``).

    ``out_dim`` is the LLM width (default: ``language_projection``'s, else the Q-Former width); weights of
    other parts of the checkpoint (vision tower, LLM) are ignored here. ``instruction``: an InstructBLIP config
    (its Q-Former embeddings already renamed to BLIP-2's keys, see ``vlfuse.convert.instructblip``).

    Example:
        >>> hf = Blip2ForConditionalGeneration(cfg)
        >>> qformer = load_blip2_qformer(hf.state_dict(), cfg)
    """
    ours = qformer_config(config, instruction)
    table = list(_TOP)
    table += [(f"qformer.encoder.layer.{i}.{a}", f"layers.{i}.{b}") for i in range(ours.layers) for a, b in _LAYER]
    keep = tuple(p for p, _ in table)
    picked = {k[len(prefix):]: v for k, v in state_dict.items()
              if k.startswith(prefix) and k[len(prefix):].startswith(keep)}
    if "query_tokens" not in picked:
        raise ValueError(f"no 'query_tokens' under prefix {prefix!r}; give a BLIP-2 model's state dict "
                         f"(first keys: {list(state_dict)[:3]})")
    state = rename(picked, table)
    state["query_tokens"] = state["query_tokens"].reshape(ours.num_queries, ours.hidden_size)
    if out_dim is None:
        out_dim = state["proj.weight"].shape[0] if "proj.weight" in state else ours.hidden_size
    module = QFormer(ours, in_dim=config.qformer_config.encoder_hidden_size, out_dim=out_dim)
    missing, unexpected = module.load_state_dict(state, strict=False)
    allowed = _NO_HF_COUNTERPART + (() if "proj.weight" in state else ("proj.",))
    missing = [k for k in missing if not k.startswith(allowed)]
    if missing or unexpected:
        raise ValueError(f"BLIP-2 weights do not fit the qformer: missing {missing[:5]}, unexpected {unexpected[:5]}; "
                         "is the config the one these weights were saved with?")
    return module


@converter("blip-2")
def convert_blip2(directory: Path, hf: PretrainedConfig) -> Converted:
    """``Blip2ForConditionalGeneration`` (decoder-only LLM): ViT -> Q-Former -> linear -> concat -> LM.

    The Q-Former is built for real (its ITC / ITG heads have no transformers counterpart and keep their
    initialisation); everything else is assigned from the checkpoint.
    """
    if not hf.use_decoder_only_language_model:  # Flan-T5: its own converter, the encoder_prefix injection
        from vlfuse.convert.blip2_t5 import convert_blip2_t5

        return convert_blip2_t5(directory, hf)
    return convert_blip2_family(directory, hf, read_safetensors(directory))


def convert_blip2_family(directory: Path, hf: Any, state: dict[str, torch.Tensor],
                         instruction: bool = False) -> Converted:
    """BLIP-2's layout (InstructBLIP's with ``instruction``, its embedding keys renamed) -> a ``Converted``.

    As transformers' processors do, the prompt holds no image placeholder: each image's ``Q`` tokens go before
    the prompt's ids, BOS included (``TokenizerConfig.image_prefix``).
    """
    name = "InstructBLIP" if instruction else "BLIP-2"
    require(hf.use_decoder_only_language_model,
            f"{name} with a {hf.text_config.model_type!r} encoder-decoder LLM is not supported; "
            "vlfuse loads encoder-decoder LLMs for BLIP-2 only")
    require(hf.image_token_index is not None,
            f"this {name} config has no image_token_index (an older checkpoint); set it to the id of the tokenizer's "
            "image token and save again")
    tok, image_token = tokenizer(directory, hf.image_token_index)
    config = VLMConfig(encoder=Blip2VisionEncoderConfig(config=hf.vision_config.to_dict()),
                       connector=qformer_config(hf, instruction), injection=ConcatConfig(),
                       llm=LLMConfig(config=hf.text_config.to_dict()),
                       tokenizer=TokenizerConfig(image_token=image_token, image_prefix=True))
    connector = load_blip2_qformer(state, hf, out_dim=hf.text_config.hidden_size, instruction=instruction)
    rest = {k: v for k, v in state.items() if k.startswith(("vision_model.", "language_model.", "lm_head."))}
    rest = rename(rest, [("vision_model.", "encoder.tower."), ("language_model.model.", "llm.model."),
                         ("language_model.lm_head.", "llm.lm_head."), ("language_model.", "llm.model."),
                         ("lm_head.", "llm.lm_head.")])
    return Converted(config, tok, {**rest, **{f"connector.{k}": v for k, v in connector.state_dict().items()}})
