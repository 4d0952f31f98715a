"""The only adapter to Hugging Face causal LMs: build from a local folder or a config, and a few accessors.

vlfuse talks to an LLM only through ``get_input_embeddings()``, ``inputs_embeds=``, the KV-cache name below and
the per-``model_type`` table (where its decoder layers live, what bounds its positions). Adding a family is one
table row.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from vlfuse.config import ConfigError
from vlfuse.hub import NO_REMOTE_CODE, check_folder


def _cache_keyword() -> str:
    """``cache`` where ``transformers`` has renamed the KV cache, else ``past_key_values`` (its older name).

    The rename changed the models' forward keyword and their outputs' field together, and the old name now warns
    ("`past_key_values` is deprecated ... Use `cache` instead"), so the output field tells which one to use.
    """
    return "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


CACHE_KEYWORD: str = _cache_keyword()  # decided once, at import; every LLM call and cache read goes through it

# model_type -> (dotted path of the decoder-layer list, config attribute bounding positions)
LLM_TABLE: dict[str, tuple[str, str]] = {
    "llama": ("model.layers", "max_position_embeddings"),
    "mistral": ("model.layers", "max_position_embeddings"),
    "qwen2": ("model.layers", "max_position_embeddings"),
    "qwen3": ("model.layers", "max_position_embeddings"),
    "gemma": ("model.layers", "max_position_embeddings"),
    "phi3": ("model.layers", "max_position_embeddings"),
    "gpt2": ("transformer.h", "n_positions"),
    "opt": ("model.decoder.layers", "max_position_embeddings"),
}

TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "rms_norm_eps": 1e-5,
}


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, default: Any) -> Any:
    """A YAML string such as ``"1e-6"`` (YAML 1.1 reads a float without a dot as text) as the default's type."""
    if not isinstance(value, str) or isinstance(default, bool) or not isinstance(default, (int, float)):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if isinstance(default, int) and number.is_integer() else number


# transformers config keys that are sizes or counts: 0 or less only fails later, deep inside torch
_SIZES = {"hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
          "max_position_embeddings", "vocab_size", "head_dim", "image_size", "patch_size", "num_channels",
          "n_embd", "n_head", "n_layer", "n_positions", "n_inner"}


def check_hf_config(config: dict[str, Any], default_type: str, where: str, allowed: list[str]) -> dict[str, Any]:
    """``config`` (a transformers config as a mapping) checked against its ``model_type``'s config class.

    Keys must be ``__init__`` arguments or default attributes of that class (``hidden_sizee`` is refused with a
    suggestion, where ``AutoConfig.for_model`` would store and ignore it); numeric strings become the type of the
    class's default. ``allowed`` are the model types vlfuse can use here. Returns the coerced mapping.
    """
    data = dict(config)
    model_type = data.get("model_type", default_type)
    if model_type not in CONFIG_MAPPING or model_type not in allowed:
        raise ConfigError(f"model_type {model_type!r} in {where} is not supported{_suggest(str(model_type), allowed)}; "
                          f"choices: {', '.join(allowed)}")
    cls = CONFIG_MAPPING[model_type]
    defaults = cls().to_dict()
    valid = set(inspect.signature(cls.__init__).parameters) | set(defaults) | set(cls.attribute_map)
    valid |= set(defaults.get("rope_parameters") or {}) | ({"rope_scaling"} if "rope_parameters" in defaults else set())
    valid -= {"self", "args", "kwargs"}
    for key, value in data.items():
        if key not in valid:
            hint = _suggest(key, sorted(valid))
            raise ConfigError(f"unknown key {key!r} in {where} of model_type {model_type!r}{hint}; "
                              f"valid keys: {', '.join(sorted(valid))}")
        data[key] = _coerce(value, defaults.get(cls.attribute_map.get(key, key)))
        if key in _SIZES and isinstance(data[key], int) and data[key] < 1:
            raise ConfigError(f"{where}.{key} is {data[key]}; a size must be >= 1")
    try:
        cls(**{k: v for k, v in data.items() if k != "model_type"})
    except (StrictDataclassError, TypeError, ValueError) as e:  # transformers' own check of each field's type
        detail = str(e).strip().splitlines()[-1].strip()
        raise ConfigError(f"{where} (model_type {model_type!r}): {detail}; fix that key's value") from None
    return data


@dataclass(frozen=True)
class LLMConfig:
    path: str | None = None  # local folder of any AutoModelForCausalLM; its weights are loaded
    config: dict[str, Any] = field(default_factory=lambda: dict(TINY_LLAMA))  # used when path is None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"

    def __post_init__(self) -> None:
        if self.path is None:  # keys checked and numbers coerced here, before any model is built
            object.__setattr__(self, "config", check_hf_config(self.config, "llama", "config", list(LLM_TABLE)))


def build_llm(config: LLMConfig, vocab_size: int | None = None) -> PreTrainedModel:
    """An ``AutoModelForCausalLM`` from ``config.path`` (weights) or ``config.config`` (random init).

    ``vocab_size`` grows (never shrinks) the embeddings so added tokens such as ``<image>`` have rows.
    """
    dtype = getattr(torch, config.dtype)
    if config.path is not None:
        check_folder(config.path, "llm.path", weights=True)  # no code from the folder, no pickled weights
        model = AutoModelForCausalLM.from_pretrained(
            config.path, dtype=dtype, attn_implementation=config.attn_implementation, use_safetensors=True,
            **NO_REMOTE_CODE,
        )
    else:
        kwargs = dict(config.config)
        model_type = kwargs.pop("model_type", "llama")
        if vocab_size is not None:  # grow to the tokenizer, never shrink (a checkpoint may have spare rows)
            kwargs["vocab_size"] = max(vocab_size, int(kwargs.get("vocab_size") or 0))
        hf = AutoConfig.for_model(model_type, **kwargs)
        hf._attn_implementation = config.attn_implementation
        model = AutoModelForCausalLM.from_config(hf, dtype=dtype, attn_implementation=config.attn_implementation)
    if model.config.model_type not in LLM_TABLE:
        raise ValueError(
            f"LLM model_type {model.config.model_type!r} is not in vlfuse.llm.LLM_TABLE "
            f"({', '.join(LLM_TABLE)}); add a row naming its decoder-layer path and position limit"
        )
    if vocab_size is not None and vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size)
    return model


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """The keyword argument that hands ``cache`` (a ``transformers`` ``Cache`` or ``None``) to an LLM's forward."""
    return {CACHE_KEYWORD: cache}


def output_cache(output: Any) -> Any:
    """The KV cache an LLM's forward returned (``None`` when it returned none), read under the installed name."""
    return getattr(output, CACHE_KEYWORD, None)


def hidden_size(model: PreTrainedModel) -> int:
    """``Dt``, the LLM width."""
    return model.get_input_embeddings().embedding_dim


def max_positions(model: PreTrainedModel) -> int:
    """The longest sequence the LLM accepts (its position limit)."""
    return int(getattr(model.config, LLM_TABLE[model.config.model_type][1]))


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The list of decoder layers, found through ``LLM_TABLE``."""
    node: Any = model
    for attr in LLM_TABLE[model.config.model_type][0].split("."):
        node = getattr(node, attr)
    return node
