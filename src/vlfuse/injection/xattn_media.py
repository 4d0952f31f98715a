"""Media, masks and the generation cache of the ``cross_attention`` injection.

Images never enter the token sequence: each image is one marker token (``<image>``) in the text, and its ``V``
visual tokens wait beside it. For each text token the mask says which images it reads:

- ``last`` (Flamingo's default; IDEFICS ``image_attention_mask``): the most recent image at or before it;
- ``all``: every image at or before it.

A token before any image reads nothing: its cross-attention output is zero. In Python loops nothing runs per
token or per sample: the image each token reads is a cumulative sum over the marker positions.

Generation: the visual keys / values of every block are projected once, in the prefill, and travel with the LLM's
own KV cache in a ``CrossAttentionCache``; a decode step reads them and projects nothing. In ``last`` mode a
generated token can only read each sample's last image, so the cache keeps that image's ``V`` keys / values alone:
its size and the decode cost do not grow with the number of images in the prompt.
Shapes: ``B`` batch, ``T`` text length, ``N_all`` images in the batch, ``N_max`` most images of one sample,
``V`` visual tokens per image, ``M = N_max * V``, ``Dm`` media width, ``hk`` key/value heads, ``hd`` head dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class CrossAttentionCache:
    """The LLM's own KV cache, plus each block's visual keys / values, projected once per sequence.

    ``keys[j]``, ``values[j]``: ``(B, hk, M, hd)`` of block ``j``; ``slots (B, N_max)``: which image slots are real;
    ``seen (B,)``: image markers read so far; ``per_image``: ``V``.
    """

    self_attn: Any
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    slots: torch.Tensor
    seen: torch.Tensor
    per_image: int

    def get_seq_length(self) -> int:
        """Tokens held by the LLM's own cache."""
        return 0 if self.self_attn is None else int(self.self_attn.get_seq_length())

    def visual_bytes(self) -> int:
        """Bytes of the cached visual keys / values."""
        return sum(t.numel() * t.element_size() for t in [*self.keys, *self.values])


@dataclass
class CrossAttentionContext:
    """What the wrapped decoder layers receive through the LLM call: the blocks, their K/V and the masks.

    ``mask (B, 1, T, M)`` (True: attend), ``rows (B, T, 1)`` (1: the token sees an image), ``ff_rows (B, T, 1)``.
    """

    blocks: nn.ModuleList
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    rows: torch.Tensor
    ff_rows: torch.Tensor

    def apply(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        """Run block ``index`` on ``hidden (B, T, Dt)``."""
        return self.blocks[index](hidden, self.keys[index], self.values[index], self.mask, self.rows, self.ff_rows)


def check_images(markers: torch.Tensor, visual: torch.Tensor | None, image_counts: torch.Tensor | None) -> torch.Tensor:
    """Images per sample ``(B,)``; raise if the ``<image>`` markers in ``markers (B, T)`` do not fit ``visual``."""
    per_sample = markers.sum(dim=1)  # (B,)
    n_img = 0 if visual is None else visual.shape[0]
    if image_counts is not None:
        bad = (per_sample != image_counts.to(per_sample.device)).nonzero()
        if len(bad):
            b = int(bad[0])
            raise ValueError(f"sample {b} has {int(per_sample[b])} <image> marker(s) but {int(image_counts[b])} "
                             "image(s) were given; with cross-attention each image is exactly one <image> token")
    if int(per_sample.sum()) != n_img:
        raise ValueError(f"the text has {int(per_sample.sum())} <image> marker(s) but {n_img} image(s) were given; "
                         "put one <image> token in the text per image, in order, and pass every image")
    return per_sample


def pack_media(visual: torch.Tensor | None, counts: torch.Tensor, media_dim: int,
               like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``visual (N_all, V, Dm)`` in batch order -> ``media (B, M, Dm)`` zero-padded, ``slots (B, N_max)``, ``V``."""
    b = counts.shape[0]
    n_max = int(counts.max()) if b and visual is not None else 0
    slots = torch.arange(n_max, device=counts.device) < counts[:, None]  # (B, N_max)
    if n_max == 0:
        return like.new_zeros(b, 0, media_dim), slots, 0
    if visual.shape[-1] != media_dim:
        raise ValueError(f"visual tokens are {visual.shape[-1]} wide but the cross-attention reads {media_dim}; "
                         "set injection.media_dim to the connector's output width (or leave it null for the LLM's)")
    v = visual.shape[1]
    media = visual.new_zeros(b, n_max, v, media_dim)  # (B, N_max, V, Dm)
    media[slots] = visual  # row-major order of slots is the batch order of the images
    return media.flatten(1, 2), slots, v  # (B, M, Dm)


def media_masks(markers: torch.Tensor, seen: torch.Tensor, slots: torch.Tensor, per_image: int, mode: str,
                unseen_rows: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mask (B, 1, T, M)``, ``rows (B, T, 1)``, ``ff_rows (B, T, 1)`` for ``markers (B, T)``.

    ``seen (B,)`` counts the markers before this chunk (0 in a prefill). A row that sees no image gets an
    all-true mask (SDPA needs one key) and ``rows = 0``, which zeroes its output; with
    ``unseen_rows="all_images"`` it reads every image of its sample instead, as transformers' Mllama does.
    """
    last = seen[:, None] + markers.long().cumsum(dim=-1) - 1  # (B, T): most recent image at or before t; -1 none
    n = torch.arange(slots.shape[1], device=markers.device)  # (N_max,)
    visible = n == last[..., None] if mode == "last" else n <= last[..., None]  # (B, T, N_max)
    visible = visible & slots[:, None, :]
    sees = visible.any(dim=-1)  # (B, T)
    ff_rows = sees
    if unseen_rows == "all_images":
        visible = torch.where(sees[..., None], visible, slots[:, None, :])  # (B, T, N_max)
        sees = visible.any(dim=-1)
    mask = visible.repeat_interleave(per_image, dim=-1)  # (B, T, M)
    mask = mask | ~sees[..., None]  # a row that sees nothing: any key, output zeroed through `rows`
    return mask[:, None], sees[..., None], ff_rows[..., None]


def keep_last_image(keys: list[torch.Tensor], values: list[torch.Tensor], counts: torch.Tensor,
                    per_image: int) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Each sample's last image only: ``(B, hk, M, hd) -> (B, hk, V, hd)`` per block, ``slots (B, 1)``, ``seen (B,)``.

    What every later token reads in ``last`` mode; the cache then looks as if each sample had at most one image.
    """
    first = (counts - 1).clamp(min=0) * per_image  # (B,): where the last image's tokens start
    index = first[:, None] + torch.arange(per_image, device=counts.device)  # (B, V)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(2, index[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3]))  # (B, hk, V, hd)

    has = counts > 0  # (B,)
    return [pick(k) for k in keys], [pick(v) for v in values], has[:, None], has.long()
