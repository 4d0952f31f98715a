"""Concatenation injection (LLaVA, Liu et al., 2023, arXiv:2304.08485): visual tokens replace placeholders.

Each image's ``<image>`` placeholder is expanded (by ``vlfuse.data.collate``) to ``V`` copies; here every copy's
embedding is overwritten by one visual token, in order, with one vectorised ``masked_scatter`` (no loop over
the batch). Any number of images anywhere in each sample, different counts per sample, zero included.
Reference: ``transformers.LlavaModel.forward`` / ``get_placeholder_mask``.
Shapes: ``B`` batch, ``S`` sequence, ``V`` visual tokens per image, ``Dt`` LLM width, ``N_all`` images in batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedModel

from vlfuse.injection.base import Injector, InjectorOutput
from vlfuse.llm import cache_kwargs, output_cache
from vlfuse.registry import INJECTIONS


@dataclass(frozen=True)
class ConcatConfig:
    kind: Literal["concat"] = "concat"


@INJECTIONS.register("concat", ConcatConfig)
class ConcatInjector(Injector):
    """Scatter visual tokens into the text embeddings at the image-token positions.

    Example:
        >>> inj = ConcatInjector(ConcatConfig(), llm); inj.image_token_id = tok.convert_tokens_to_ids("<image>")
        >>> out = inj(llm, input_ids, visual, attention_mask)  # input_ids hold V image tokens per image
    """

    def __init__(self, config: ConcatConfig, llm: PreTrainedModel) -> None:
        super().__init__()
        self.config = config

    def placeholder_tokens(self, visual_tokens: int) -> int:
        return visual_tokens

    def merge(self, embeds: torch.Tensor, mask: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Write ``visual (N_all, V, Dt)`` into ``embeds (B, S, Dt)`` where ``mask (B, S)`` is true, in order."""
        return embeds.masked_scatter(mask.unsqueeze(-1), visual.to(embeds.dtype))  # (B, S, Dt)

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
        """``input_ids (B, S)``, ``visual (N_all, V, Dt)`` -> the LLM's logits ``(B, S, W)`` and its cache."""
        mask = input_ids == self.image_token_id  # (B, S)
        check_placeholders(mask, visual, image_counts)
        embeds = llm.get_input_embeddings()(input_ids.masked_fill(mask, 0))  # (B, S, Dt)
        if visual is not None and visual.shape[0] > 0:
            embeds = self.merge(embeds, mask, visual)
        out = llm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **cache_kwargs(past_key_values),  # `cache=` or `past_key_values=`, whichever transformers takes
        )
        return InjectorOutput(out.logits, output_cache(out))


def check_placeholders(mask: torch.Tensor, visual: torch.Tensor | None, image_counts: torch.Tensor | None) -> None:
    """Raise if the image-token positions in ``mask (B, S)`` do not match ``visual (N_all, V, Dt)``.

    The message names the sample and both counts, e.g. "sample 1 has 128 image tokens (2 images of 64) but 3
    images were given", so truncation or a missing ``<image>`` is found at once.
    """
    per_sample = mask.sum(dim=1)  # (B,)
    n_tokens = int(per_sample.sum())
    if visual is None or visual.shape[0] == 0:
        if n_tokens:
            raise ValueError(f"the text has {n_tokens} image tokens but no images were given; pass pixel_values")
        return
    n_img, v = visual.shape[0], visual.shape[1]
    if v == 0:  # a zero-token connector: placeholders expand to nothing
        if n_tokens:
            raise ValueError(f"the text has {n_tokens} image tokens but the connector yields 0 per image")
        return
    counts = per_sample.tolist()
    if image_counts is not None:
        for b, (n_tok, n_expected) in enumerate(zip(counts, image_counts.tolist())):
            if n_tok != n_expected * v:
                raise ValueError(
                    f"sample {b} has {n_tok} image tokens ({n_tok / v:g} images of {v} tokens) but {n_expected} "
                    f"image(s) were given; each image needs exactly one <image> placeholder, expanded to {v} tokens"
                )
    if n_tokens != n_img * v:
        bad = [b for b, c in enumerate(counts) if c % v]
        where = f" (sample {bad[0]} has {counts[bad[0]]}, not a multiple of {v})" if bad else ""
        raise ValueError(
            f"image tokens and image features do not match: tokens: {n_tokens}, features: {n_img} images x {v} = "
            f"{n_img * v}{where}; give one <image> placeholder per image and never truncate through image tokens"
        )
