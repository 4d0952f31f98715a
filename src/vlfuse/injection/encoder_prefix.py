"""Encoder-prefix injection (BLIP-2 with Flan-T5, Li et al., 2023, arXiv:2301.12597): visual tokens and the prompt
are the input of an encoder-decoder LLM's encoder; its decoder writes the answer.

The image placeholders (expanded by ``vlfuse.data.collate`` to ``V`` copies, in front of the prompt as
``transformers``' ``Blip2Processor`` puts them) are overwritten by the visual tokens, as in ``concat``; the LLM's
encoder reads that sequence once, and its decoder cross-attends to the result. Training: ``labels (B, T)`` are the
decoder targets (the answer and EOS); the decoder reads them shifted right behind the start token, and the loss is
the cross-entropy at each decoder position, unshifted. Generation: the prefill runs the encoder and the decoder's
start token; each decode step feeds one token with the decoder's self- and cross-attention KV cache (the encoder
output and its mask travel in ``EncoderState``, so the encoder never runs again).
Reference: ``transformers.Blip2ForConditionalGeneration.forward`` (the ``use_decoder_only_language_model=False``
branch) and ``T5ForConditionalGeneration.forward``.
Shapes: ``B`` batch, ``S`` encoder sequence, ``T`` decoder sequence, ``V`` visual tokens per image, ``Dt`` LLM width,
``N_all`` images in the batch, ``W`` vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from vlfuse.injection.base import Injector, InjectorOutput
from vlfuse.injection.concat import check_placeholders
from vlfuse.llm import cache_kwargs, output_cache
from vlfuse.registry import INJECTIONS


@dataclass(frozen=True)
class EncoderPrefixConfig:
    kind: Literal["encoder_prefix"] = "encoder_prefix"


@dataclass
class EncoderState:
    """What a decode step continues from: the decoder's KV cache and the encoder's output, computed once."""

    cache: Any  # the LLM's EncoderDecoderCache (self-attention grows, cross-attention is fixed)
    encoder_hidden: torch.Tensor  # (B, S, Dt)
    encoder_mask: torch.Tensor | None  # (B, S)


@INJECTIONS.register("encoder_prefix", EncoderPrefixConfig)
class EncoderPrefixInjector(Injector):
    """Visual tokens in the encoder input of an encoder-decoder LLM (``AutoModelForSeq2SeqLM``, e.g. Flan-T5).

    ``forward`` reads ``decoder_input_ids (B, T)`` (given decoder tokens), else ``labels (B, T)`` (shifted right into
    decoder inputs), else starts the decoder at its start token (generation's prefill).

    Example:
        >>> inj = EncoderPrefixInjector(EncoderPrefixConfig(), t5); inj.image_token_id = image_id
        >>> out = inj(t5, input_ids, visual, attention_mask, decoder_input_ids=answer_so_far)  # (B, T, W) logits
    """

    inputs = ("decoder_input_ids", "decoder_attention_mask", "labels")
    encoder_decoder = True

    def __init__(self, config: EncoderPrefixConfig, llm: PreTrainedModel) -> None:
        super().__init__()
        self.config = config
        if not llm.config.is_encoder_decoder:
            raise ValueError(f"injection 'encoder_prefix' needs an encoder-decoder LLM (e.g. t5); "
                             f"{llm.config.model_type!r} is a causal LM: use injection kind 'concat'")

    def placeholder_tokens(self, visual_tokens: int) -> int:
        return visual_tokens

    def encode(self, llm: PreTrainedModel, input_ids: torch.Tensor, visual: torch.Tensor | None,
               attention_mask: torch.Tensor | None, image_counts: torch.Tensor | None) -> torch.Tensor:
        """The LLM encoder's output ``(B, S, Dt)``: ``input_ids (B, S)`` with ``visual (N_all, V, Dt)`` in place."""
        mask = input_ids == self.image_token_id  # (B, S)
        check_placeholders(mask, visual, image_counts)
        embeds = llm.get_input_embeddings()(input_ids.masked_fill(mask, 0))  # (B, S, Dt)
        if visual is not None and visual.shape[0] > 0:
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), visual.to(embeds.dtype))  # (B, S, Dt)
        return llm.get_encoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state

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
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> InjectorOutput:
        """Encoder ``input_ids (B, S)`` + ``visual`` -> decoder logits ``(B, T, W)`` (``(N_true, W)`` with a mask).

        With ``past_key_values`` (an ``EncoderState``), ``input_ids (B, 1)`` are the decoder's newest tokens and the
        encoder is not run; ``attention_mask`` and ``position_ids`` are then ignored (the decoder has no padding,
        and T5's positions are relative).
        """
        if isinstance(past_key_values, EncoderState):
            state, decoder_input_ids = past_key_values, input_ids  # (B, 1): the last generated token
        elif past_key_values is not None:
            raise TypeError(f"encoder_prefix continues from the EncoderState its prefill returned, not a "
                            f"{type(past_key_values).__name__}; pass the previous output's past_key_values")
        else:
            hidden = self.encode(llm, input_ids, visual, attention_mask, image_counts)  # (B, S, Dt)
            state = EncoderState(None, hidden, attention_mask)
            if decoder_input_ids is None and labels is not None:
                decoder_input_ids = llm.prepare_decoder_input_ids_from_labels(labels)  # (B, T): start + labels[:-1]
            if decoder_input_ids is None:
                start = llm.config.decoder_start_token_id
                decoder_input_ids = input_ids.new_full((input_ids.shape[0], 1), start)  # (B, 1)
        out = llm(encoder_outputs=(state.encoder_hidden,), attention_mask=state.encoder_mask,
                  decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask,
                  use_cache=use_cache, **cache_kwargs(state.cache))
        logits = out.logits  # (B, T, W)
        if isinstance(logits_to_keep, torch.Tensor):
            logits = logits[logits_to_keep]  # (N_true, W)
        elif logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        cache = EncoderState(output_cache(out), state.encoder_hidden, state.encoder_mask) if use_cache else None
        return InjectorOutput(logits, cache)

    def label_positions(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` bool: the decoder positions with a target (decoder logits at t score ``labels[:, t]``)."""
        return labels != -100

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, keep: int | torch.Tensor = 0) -> torch.Tensor:
        """Mean cross-entropy of decoder ``logits (B, T, W)`` (``(N_true, W)`` with ``keep``) at ``labels (B, T)``."""
        if isinstance(keep, torch.Tensor):
            return F.cross_entropy(logits.float(), labels[keep])
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
