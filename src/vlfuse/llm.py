"""The only adapter to Hugging Face causal LMs: build from a local folder or a config, and a few accessors.

vlfuse talks to an LLM only through ``get_input_embeddings()``, ``inputs_embeds=``, the KV-cache name below and
the per-``model_type`` table (where its decoder layers live, what bounds its positions). Adding a family is one
table row and its tiny config in ``tests/unit/test_llm_families.py`` (which checks it against ``transformers``).
Encoder-decoder families (``SEQ2SEQ``, Flan-T5) are built as ``AutoModelForSeq2SeqLM``; only the ``encoder_prefix``
injection runs them.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING

from vlfuse.config import ConfigError
from vlfuse.hub import NO_REMOTE_CODE, check_folder


def _cache_keyword() -> str:
    """``cache`` where ``transformers`` has renamed the KV cache, else ``past_key_values`` (its older name).

    The rename changed the models' forward keyword and their outputs' field together, and the old name now warns
    ("`past_key_values` is deprecated ... Use `cache` instead"), so the output field tells which one to use.
    """
    return "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


CACHE_KEYWORD: str = _cache_keyword()  # decided once, at import; every LLM call and cache read goes through it

# model_type -> (dotted path of the decoder-layer list, config attribute bounding positions; None: no bound)
LLM_TABLE: dict[str, tuple[str, str | None]] = {
    "llama": ("model.layers", "max_position_embeddings"),
    "mistral": ("model.layers", "max_position_embeddings"),
    "qwen2": ("model.layers", "max_position_embeddings"),
    "qwen3": ("model.layers", "max_position_embeddings"),
    "gemma": ("model.layers", "max_position_embeddings"),
    "phi3": ("model.layers", "max_position_embeddings"),
    "gpt2": ("transformer.h", "n_positions"),
    "opt": ("model.decoder.layers", "max_position_embeddings"),
    "phi": ("model.layers", "max_position_embeddings"),
    "gemma2": ("model.layers", "max_position_embeddings"),
    "gemma3_text": ("model.layers", "max_position_embeddings"),
    "persimmon": ("model.layers", "max_position_embeddings"),
    "t5": ("decoder.block", None),  # relative position buckets: any length runs (memory is the bound)
}
UNBOUNDED = 1 << 30  # max_positions of an LLM without a position limit
SEQ2SEQ: frozenset[str] = frozenset({"t5"})  # model types built as AutoModelForSeq2SeqLM (encoder + decoder)

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
    valid |= {"decoder_start_token_id"} if defaults.get("is_encoder_decoder") else set()  # T5's, kept as an extra
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
    path: str | None = None  # local folder of any AutoModelForCausalLM (Seq2SeqLM for SEQ2SEQ); its weights load
    config: dict[str, Any] = field(default_factory=lambda: dict(TINY_LLAMA))  # used when path is None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"  # sdpa where the family has it (Gemma 2: eager)

    def __post_init__(self) -> None:
        if self.path is None:  # keys checked and numbers coerced here, before any model is built
            object.__setattr__(self, "config", check_hf_config(self.config, "llama", "config", list(LLM_TABLE)))


def _attention(hf: PretrainedConfig, wanted: str) -> str:
    """``wanted``, except ``eager`` where ``transformers`` has no SDPA path for the family (Gemma 2: its
    attention-logit softcapping), as ``transformers`` itself picks when no implementation is asked for."""
    mapping = MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING if hf.model_type in SEQ2SEQ else MODEL_FOR_CAUSAL_LM_MAPPING
    cls = mapping.get(type(hf), None)
    return "eager" if wanted == "sdpa" and cls is not None and not cls._supports_sdpa else wanted


def build_llm(config: LLMConfig, vocab_size: int | None = None) -> PreTrainedModel:
    """An ``AutoModelForCausalLM`` (``AutoModelForSeq2SeqLM`` for ``SEQ2SEQ`` types) from ``config.path``
    (weights) or ``config.config`` (random init).

    ``vocab_size`` grows (never shrinks) the embeddings so added tokens such as ``<image>`` have rows. A family
    outside ``LLM_TABLE`` is refused before any weight is read.
    """
    dtype = getattr(torch, config.dtype)
    if config.path is not None:
        check_folder(config.path, "llm.path", weights=True)  # no code from the folder, no pickled weights
        hf = AutoConfig.from_pretrained(config.path, **NO_REMOTE_CODE)
    else:
        kwargs = dict(config.config)
        model_type = kwargs.pop("model_type", "llama")
        if vocab_size is not None:  # grow to the tokenizer, never shrink (a checkpoint may have spare rows)
            kwargs["vocab_size"] = max(vocab_size, int(kwargs.get("vocab_size") or 0))
        if model_type in SEQ2SEQ:  # T5 starts its decoder at <pad> (its pad_token_id, 0 by default)
            kwargs.setdefault("decoder_start_token_id", kwargs.get("pad_token_id", 0))
        hf = AutoConfig.for_model(model_type, **kwargs)
    if hf.model_type not in LLM_TABLE:
        raise ValueError(
            f"LLM model_type {hf.model_type!r} is not in vlfuse.llm.LLM_TABLE ({', '.join(LLM_TABLE)}); add a row "
            "naming its decoder-layer path and position limit, and its tiny config to tests/unit/test_llm_families.py"
        )
    attn = _attention(hf, config.attn_implementation)
    auto = AutoModelForSeq2SeqLM if hf.model_type in SEQ2SEQ else AutoModelForCausalLM
    if config.path is not None:
        model = auto.from_pretrained(config.path, config=hf, dtype=dtype, attn_implementation=attn,
                                                     use_safetensors=True, **NO_REMOTE_CODE)
    else:
        hf._attn_implementation = attn
        model = auto.from_config(hf, dtype=dtype, attn_implementation=attn)
    if vocab_size is not None and vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size)
    return model


def is_seq2seq(model: PreTrainedModel) -> bool:
    """Whether ``model`` is an encoder-decoder LLM (its text goes to an encoder, its answer comes from a decoder)."""
    return model.config.model_type in SEQ2SEQ


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """The keyword argument that hands ``cache`` (a ``transformers`` ``Cache`` or ``None``) to an LLM's forward."""
    return {CACHE_KEYWORD: cache}


def output_cache(output: Any) -> Any:
    """The KV cache an LLM's forward returned (``None`` when it returned none), read under the installed name."""
    return getattr(output, CACHE_KEYWORD, None)


def hidden_size(model: PreTrainedModel) -> int:
    """``Dt``, the LLM's input width: what its embeddings (and so the visual tokens put among them) have."""
    return model.get_input_embeddings().embedding_dim


def decoder_width(model: PreTrainedModel) -> int:
    """The width of the decoder layers' hidden states: ``hidden_size`` but where the family projects its
    embeddings in (OPT-350m: 512-wide embeddings, 1024-wide layers)."""
    return int(model.config.hidden_size)


def max_positions(model: PreTrainedModel) -> int:
    """The longest sequence the LLM accepts (its position limit; ``UNBOUNDED`` for relative positions, T5's)."""
    attr = LLM_TABLE[model.config.model_type][1]
    return UNBOUNDED if attr is None else int(getattr(model.config, attr))


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The list of decoder layers, found through ``LLM_TABLE``."""
    node: Any = model
    for attr in LLM_TABLE[model.config.model_type][0].split("."):
        node = getattr(node, attr)
    return node
