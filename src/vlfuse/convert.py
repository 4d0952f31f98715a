"""Load saved ``transformers`` VLM checkpoints into the equivalent vlfuse model (``VLM.from_transformers``).

One converter per ``model_type`` in ``CONVERTERS``: it builds the ``VLMConfig`` from the HF config and maps
state-dict key prefixes; weights are read with safetensors (never unpickled) and loaded strictly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

CONVERTERS: dict[str, Callable[[Path, PretrainedConfig], Any]] = {}


def converter(model_type: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        CONVERTERS[model_type] = fn
        return fn

    return deco


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors checkpoint."""
    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else [
        "model.safetensors"]
    out: dict[str, torch.Tensor] = {}
    for name in files:
        if not (directory / name).is_file():
            raise ValueError(f"{str(directory)!r} has no {name}; save the transformers model with safetensors")
        with safe_open(str(directory / name), framework="pt") as f:
            for key in f.keys():  # safe_open has no __iter__
                out[key] = f.get_tensor(key)
    return out


def rename(state: dict[str, torch.Tensor], prefixes: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Map each key through the first matching ``(hf_prefix, vlfuse_prefix)``; unmatched keys raise."""
    out = {}
    for key, value in state.items():
        for src, dst in prefixes:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            raise ValueError(f"unexpected weight {key!r} in the transformers checkpoint; no vlfuse slot takes it")
    return out


def load_converted(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Strict load, allowing only a tied ``lm_head`` to be absent."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k.endswith("lm_head.weight") and model.llm.config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if model.llm.config.tie_word_embeddings:
        model.llm.tie_weights()


def from_transformers(directory: str | Path) -> Any:
    """Dispatch on the saved config's ``model_type``."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ValueError(f"{str(directory)!r} has no config.json; give the folder a transformers model was saved to")
    hf = AutoConfig.from_pretrained(str(directory))
    import vlfuse.convert_xattn  # noqa: F401  (registers the cross-attention families: idefics, mllama)

    if hf.model_type not in CONVERTERS:
        raise ValueError(f"no converter for transformers model_type {hf.model_type!r}; choices: {sorted(CONVERTERS)}")
    return CONVERTERS[hf.model_type](directory, hf)


def _tokenizer(directory: Path, token_id: int) -> tuple[Any, str]:
    try:
        tok = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{str(directory)!r} holds no tokenizer files ({e}); save the processor/tokenizer there"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, tok.convert_ids_to_tokens(token_id)


@converter("llava")
def _llava(directory: Path, hf: PretrainedConfig) -> Any:
    """LLaVA-1.5 (``LlavaForConditionalGeneration``): HF vision tower + 2-layer MLP + concat + causal LM."""
    from vlfuse.connectors.mlp import MLPConfig
    from vlfuse.data.tokenizer import TokenizerConfig
    from vlfuse.encoders.hf_vision import HFVisionConfig
    from vlfuse.injection.concat import ConcatConfig
    from vlfuse.llm import LLMConfig
    from vlfuse.model import VLM, VLMConfig

    if not isinstance(hf.vision_feature_layer, int):
        raise ValueError(f"vision_feature_layer={hf.vision_feature_layer} (several layers) is not supported yet")
    tok, image_token = _tokenizer(directory, hf.image_token_id)
    config = VLMConfig(
        encoder=HFVisionConfig(config=hf.vision_config.to_dict(), feature_layer=hf.vision_feature_layer,
                               select=hf.vision_feature_select_strategy),
        connector=MLPConfig(depth=2, activation=hf.projector_hidden_act, bias=hf.multimodal_projector_bias),
        injection=ConcatConfig(),
        llm=LLMConfig(config=hf.text_config.to_dict()),
        tokenizer=TokenizerConfig(image_token=image_token),
    )
    model = VLM.from_config(config, tokenizer=tok)
    state = rename(read_safetensors(directory), [
        ("model.vision_tower.", "encoder.tower."), ("vision_tower.", "encoder.tower."),
        ("model.multi_modal_projector.", "connector."), ("multi_modal_projector.", "connector."),
        ("model.language_model.", "llm.model."), ("language_model.model.", "llm.model."),
        ("lm_head.", "llm.lm_head."), ("language_model.lm_head.", "llm.lm_head."),
    ])
    load_converted(model, state)
    return model


@converter("blip-2")
def _blip2(directory: Path, hf: PretrainedConfig) -> Any:
    """BLIP-2 (``Blip2ForConditionalGeneration``, decoder-only LLM): ViT -> Q-Former -> linear -> concat -> LM."""
    from vlfuse.convert_blip2 import load_blip2_qformer, qformer_config
    from vlfuse.data.tokenizer import TokenizerConfig
    from vlfuse.encoders.blip2_vision import Blip2VisionEncoderConfig
    from vlfuse.injection.concat import ConcatConfig
    from vlfuse.llm import LLMConfig
    from vlfuse.model import VLM, VLMConfig

    if not hf.use_decoder_only_language_model:
        raise ValueError(f"BLIP-2 with a {hf.text_config.model_type!r} encoder-decoder LLM is not supported; "
                         "vlfuse's LLM slot takes decoder-only causal LMs")
    if hf.image_token_index is None:
        raise ValueError("this BLIP-2 config has no image_token_index (an older checkpoint); set it to the id of "
                         "the tokenizer's image token and save again")
    tok, image_token = _tokenizer(directory, hf.image_token_index)
    config = VLMConfig(encoder=Blip2VisionEncoderConfig(config=hf.vision_config.to_dict()),
                       connector=qformer_config(hf), injection=ConcatConfig(),
                       llm=LLMConfig(config=hf.text_config.to_dict()),
                       tokenizer=TokenizerConfig(image_token=image_token))
    model = VLM.from_config(config, tokenizer=tok)
    state = read_safetensors(directory)
    connector = load_blip2_qformer(state, hf, out_dim=hf.text_config.hidden_size)
    rest = {k: v for k, v in state.items() if k.startswith(("vision_model.", "language_model.", "lm_head."))}
    rest = rename(rest, [("vision_model.", "encoder.tower."), ("language_model.model.", "llm.model."),
                         ("language_model.lm_head.", "llm.lm_head."), ("language_model.", "llm.model."),
                         ("lm_head.", "llm.lm_head.")])
    load_converted(model, {**rest, **{f"connector.{k}": v for k, v in connector.state_dict().items()}})
    return model
