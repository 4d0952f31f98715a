"""The injection slot: how visual tokens reach the LLM.

Shapes: ``B`` batch, ``S`` sequence length (text plus expanded placeholders), ``V`` visual tokens per image,
``Dt`` LLM width, ``N_all`` images in the whole batch, ``W`` vocabulary size.
An injector is built as ``cls(config, llm)`` and runs the LLM:
``forward(llm, input_ids (B, S), visual (N_all, V, Dt) | None, attention_mask (B, S), ...) -> InjectorOutput``.
It is the boundary with ``transformers``: it hands the cache to the LLM and reads it back through
``vlfuse.llm.cache_kwargs`` / ``output_cache``, and returns vlfuse's own output, never the LLM's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from vlfuse.objectives.lm import kept_lm_loss, label_positions, lm_loss


@dataclass
class InjectorOutput:
    """``logits (B, S, W)``; ``past_key_values``, the cache to continue from when ``use_cache`` (else ``None``)."""

    logits: torch.Tensor
    past_key_values: Any = None


class Injector(nn.Module, ABC):
    """Base of every registered injection. ``image_token_id`` is set by the VLM from its tokenizer."""

    image_token_id: int = -1
    inputs: tuple[str, ...] = ()  # batch keys forward reads as keywords (e.g. a per-tile cross-attention mask)
    # an encoder-decoder LLM: the prompt is the encoder's input, the answer the decoder's targets (labels (B, T)
    # apart from input_ids (B, S)), and images go before the prompt and its padding (transformers' BLIP-2 layout)
    encoder_decoder: bool = False

    def label_positions(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` bool: the positions whose logits are scored against a label (``logits_to_keep``)."""
        return label_positions(labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, keep: int | torch.Tensor = 0) -> torch.Tensor:
        """Next-token cross-entropy of ``logits (B, S, W)`` (``(N_true, W)`` when ``keep`` is a mask) on ``labels``."""
        return kept_lm_loss(logits, labels, keep) if isinstance(keep, torch.Tensor) else lm_loss(logits, labels)

    @abstractmethod
    def placeholder_tokens(self, visual_tokens: int) -> int:
        """How many positions one image takes in the LLM's sequence when the connector yields ``V`` tokens."""

    @abstractmethod
    def forward(
        self,
        llm: PreTrainedModel,
        input_ids: torch.Tensor,
        visual: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        image_counts: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> InjectorOutput:
        """Run ``llm`` on ``input_ids (B, S)`` with ``visual (N_all, V, Dt)``; returns its logits and cache.

        ``logits_to_keep`` goes to the LLM's forward unchanged: 0 keeps every position, a boolean ``(B, S)`` mask
        keeps its true positions and the logits come back flat, ``(N_true, W)``.
        """
