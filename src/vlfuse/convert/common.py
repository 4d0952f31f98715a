"""Helpers shared by the converters: the ``CONVERTERS`` registry, key renaming, strict loading, the tokenizer.

A converter takes a checkpoint folder and its ``transformers`` config and returns a ``Converted``: the equivalent
``VLMConfig``, the tokenizer and the weights under vlfuse's keys. ``vlfuse.convert.from_transformers`` builds the
model (parameters on ``meta``) and assigns the weights (``vlfuse.loading``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from vlfuse.hub import NO_REMOTE_CODE


@dataclass
class Converted:
    """What a converter hands back: ``VLM.from_config(config, tokenizer)`` has exactly the keys of ``state``."""

    config: Any  # VLMConfig (image settings and dtype are filled in by from_transformers)
    tokenizer: PreTrainedTokenizerBase
    state: dict[str, torch.Tensor]  # weights under vlfuse's keys
    qformer_tokenizer: PreTrainedTokenizerBase | None = None  # an instruction Q-Former's own (InstructBLIP)


Converter = Callable[[Path, PretrainedConfig], Converted]
CONVERTERS: dict[str, Converter] = {}  # transformers model_type -> converter


def converter(model_type: str) -> Callable[[Converter], Converter]:
    """Register a converter for ``model_type`` (``@converter("llava")``)."""

    def deco(fn: Converter) -> Converter:
        CONVERTERS[model_type] = fn
        return fn

    return deco


def rename(state: Mapping[str, torch.Tensor], prefixes: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
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


def select(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The weights under ``prefix``, with it removed; none raises."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"no weight starts with prefix {prefix!r}; give the connector's own state dict or the "
                         f"prefix of its keys (first keys: {list(state)[:3]})")
    return out


def layer_keys(depth: int, hf: str, ours: str, table: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Prefix pairs for ``depth`` layers: ``hf{i}.a`` -> ``ours{i}.b`` for each ``(a, b)`` in ``table``."""
    return [(f"{hf}{i}.{a}", f"{ours}{i}.{b}") for i in range(depth) for a, b in table]


def load_strict(module: nn.Module, state: dict[str, torch.Tensor]) -> Any:
    """``module.load_state_dict`` that raises (ValueError) on any missing or unexpected key."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights do not fit the {type(module).__name__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}; is the config the one these weights were saved with?")
    return module


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


def tokenizer(directory: Path, token_id: int) -> tuple[PreTrainedTokenizerBase, str]:
    """The folder's tokenizer (pad set to EOS when missing) and the token of ``token_id``."""
    try:
        tok = AutoTokenizer.from_pretrained(str(directory), **NO_REMOTE_CODE)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{str(directory)!r} holds no tokenizer files ({e}); save the processor/tokenizer there"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, tok.convert_ids_to_tokens(token_id)
