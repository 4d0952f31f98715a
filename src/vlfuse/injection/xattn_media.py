"""Media, masks and the generation cache of the ``cross_attention`` injection.

Images never enter the token sequence: each image is one marker token (``<image>``) in the text, and its ``V``
visual tokens wait beside it. For each text token the mask says which images it reads:

- ``last`` (Flamingo's default; IDEFICS ``image_attention_mask``): the most recent image at or before it;
- ``all``: every image at or before it;
- ``group`` (transformers' Mllama): the most recent run of adjacent images, as far as it has come, so the text
  after ``<|image|><|image|>`` reads both.

Tiled images (Llama 3.2 Vision) arrive in transformers' padded slot layout: every sample has ``N_max`` slots, a
padded slot holds the tower's output on zero tiles, and a token that sees its images reads only their real tiles.

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
class MediaLayout:
    """Where each sample's media sit in its ``M = N_max * V`` keys.

    ``slots (B, N_max)``: real images (the first ``count`` of each sample); ``present (B, N_max)``: slots that hold
    media (``slots``, or every slot when the batch carries transformers' padded slot layout); ``groups (B, N_max)``:
    run of adjacent images each slot belongs to (1, 2, ...); ``keys_ok (B, M)`` or None: real tiles' keys;
    ``per_image``: ``V``.
    """

    slots: torch.Tensor
    present: torch.Tensor
    groups: torch.Tensor
    keys_ok: torch.Tensor | None
    per_image: int


@dataclass
class CrossAttentionCache:
    """The LLM's own KV cache, plus each block's visual keys / values, projected once per sequence.

    ``keys[j]``, ``values[j]``: ``(B, hk, M, hd)`` of block ``j``; ``layout``: a ``MediaLayout``;
    ``seen (B,)``: image markers read so far.
    """

    self_attn: Any
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    layout: MediaLayout
    seen: torch.Tensor

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


def check_images(markers: torch.Tensor, visual: torch.Tensor | None, image_counts: torch.Tensor | None,
                 slot_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Images per sample ``(B,)``; raise if the ``<image>`` markers in ``markers (B, T)`` do not fit ``visual``.

    ``slot_ids (B, N_max)`` (transformers' ``aspect_ratio_ids``, 0 on a padded slot): ``visual`` then holds every
    slot, ``B * N_max`` entries, and each sample's real images come first.
    """
    per_sample = markers.sum(dim=1)  # (B,)
    n_img = 0 if visual is None else visual.shape[0]
    given = image_counts if slot_ids is None else (slot_ids > 0).sum(dim=1)
    if given is not None:
        bad = (per_sample != given.to(per_sample.device)).nonzero()
        if len(bad):
            b = int(bad[0])
            raise ValueError(f"sample {b} has {int(per_sample[b])} <image> marker(s) but {int(given[b])} "
                             "image(s) were given; with cross-attention each image is exactly one <image> token")
    if slot_ids is not None:
        if n_img != slot_ids.numel():
            raise ValueError(f"aspect_ratio_ids has {slot_ids.numel()} image slots but {n_img} images were encoded; "
                             "pass pixel_values and aspect_ratio_ids / aspect_ratio_mask from the same processor call")
    elif int(per_sample.sum()) != n_img:
        raise ValueError(f"the text has {int(per_sample.sum())} <image> marker(s) but {n_img} image(s) were given; "
                         "put one <image> token in the text per image, in order, and pass every image")
    return per_sample


def image_groups(markers: torch.Tensor, n_max: int) -> torch.Tensor:
    """``(B, N_max)``: the run of adjacent ``<image>`` markers (1, 2, ...) each image belongs to; 0 on empty slots."""
    before = torch.nn.functional.pad(markers[:, :-1], (1, 0), value=False)  # (B, T): the previous token is a marker
    run = (markers & ~before).long().cumsum(dim=-1) * markers  # (B, T): run of each marker, 0 elsewhere
    image = (markers.long().cumsum(dim=-1) - 1).clamp(min=0)  # (B, T): image index of each marker
    groups = torch.zeros(markers.shape[0], max(n_max, 1), dtype=torch.long, device=markers.device)
    return groups.scatter_reduce(1, image, run, reduce="amax")[:, :n_max]  # (B, N_max)


def pack_media(visual: torch.Tensor | None, counts: torch.Tensor, media_dim: int, like: torch.Tensor,
               markers: torch.Tensor, slot_ids: torch.Tensor | None = None,
               tile_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, MediaLayout]:
    """``visual (N_all, V, Dm)`` in batch order -> ``media (B, M, Dm)`` zero-padded and its ``MediaLayout``.

    With ``slot_ids (B, N_max)``, ``visual`` is ``(B * N_max, V, Dm)``, padded slots included (transformers'
    Mllama layout), and ``tile_mask (B, N_max, tiles)`` says which tiles are real: each image's ``V`` tokens are
    ``tiles`` equal runs, one per tile.
    """
    b = counts.shape[0]
    if slot_ids is not None:
        n_max = slot_ids.shape[1]
        slots = torch.arange(n_max, device=counts.device) < counts[:, None]  # (B, N_max)
    else:
        n_max = int(counts.max()) if b and visual is not None else 0
        slots = torch.arange(n_max, device=counts.device) < counts[:, None]  # (B, N_max)
    groups = image_groups(markers, n_max)
    if n_max == 0:
        return like.new_zeros(b, 0, media_dim), MediaLayout(slots, slots, groups, None, 0)
    if visual.shape[-1] != media_dim:
        raise ValueError(f"visual tokens are {visual.shape[-1]} wide but the cross-attention reads {media_dim}; "
                         "set injection.media_dim to the connector's output width (or leave it null for the LLM's)")
    v = visual.shape[1]
    if slot_ids is not None:
        keys_ok = None
        if tile_mask is not None:
            tiles = tile_mask.shape[-1]
            if v % tiles:
                raise ValueError(f"{v} visual tokens per image do not split into {tiles} tiles; give the "
                                 "aspect_ratio_mask of the processor that made pixel_values")
            keys_ok = tile_mask.to(counts.device).bool().repeat_interleave(v // tiles, dim=-1).flatten(1)  # (B, M)
        media = visual.reshape(b, n_max * v, media_dim)  # (B, M, Dm): every slot is in the batch already
        return media, MediaLayout(slots, torch.ones_like(slots), groups, keys_ok, v)
    media = visual.new_zeros(b, n_max, v, media_dim)  # (B, N_max, V, Dm)
    media[slots] = visual  # row-major order of slots is the batch order of the images
    return media.flatten(1, 2), MediaLayout(slots, slots, groups, None, v)  # (B, M, Dm)


def media_masks(markers: torch.Tensor, seen: torch.Tensor, layout: MediaLayout, mode: str,
                unseen_rows: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mask (B, 1, T, M)``, ``rows (B, T, 1)``, ``ff_rows (B, T, 1)`` for ``markers (B, T)``.

    ``seen (B,)`` counts the markers before this chunk (0 in a prefill). ``mode``: ``last`` reads the most recent
    image, ``all`` every image so far, ``group`` the most recent run of adjacent images so far (transformers'
    Mllama: text after ``<|image|><|image|>`` reads both). A row that sees no image gets an all-true mask (SDPA
    needs one key) and ``rows = 0``, which zeroes its output; with ``unseen_rows="all_images"`` it reads every key
    its sample holds instead (padded tiles and slots included), as transformers' Mllama does.
    """
    last = seen[:, None] + markers.long().cumsum(dim=-1) - 1  # (B, T): most recent image at or before t; -1 none
    n = torch.arange(layout.slots.shape[1], device=markers.device)  # (N_max,)
    if mode == "last":
        visible = n == last[..., None]  # (B, T, N_max)
    else:
        visible = n <= last[..., None]
    if mode == "group" and layout.slots.shape[1]:
        current = layout.groups.gather(1, last.clamp(min=0))  # (B, T): run of the most recent image
        visible = visible & (layout.groups[:, None, :] == current[..., None])
    visible = visible & layout.slots[:, None, :]
    sees = visible.any(dim=-1)  # (B, T)
    mask = visible.repeat_interleave(layout.per_image, dim=-1)  # (B, T, M)
    if layout.keys_ok is not None:
        mask = mask & layout.keys_ok[:, None, :]  # a real tile's keys only
    if unseen_rows == "all_images":
        everything = layout.present.repeat_interleave(layout.per_image, dim=-1)[:, None, :]  # (B, 1, M)
        mask = torch.where(sees[..., None], mask, everything)
        rows = mask.any(dim=-1)  # (B, T)
    else:
        rows = sees
    mask = mask | ~rows[..., None]  # a row that sees nothing: any key, output zeroed through `rows`
    return mask[:, None], rows[..., None], sees[..., None]


def keep_last_image(keys: list[torch.Tensor], values: list[torch.Tensor], counts: torch.Tensor,
                    layout: MediaLayout) -> tuple[list[torch.Tensor], list[torch.Tensor], MediaLayout, torch.Tensor]:
    """Each sample's last image only: ``(B, hk, M, hd) -> (B, hk, V, hd)`` per block, its layout, ``seen (B,)``.

    What every later token reads in ``last`` mode; the cache then looks as if each sample had at most one image.
    """
    v = layout.per_image
    first = (counts - 1).clamp(min=0) * v  # (B,): where the last image's tokens start
    index = first[:, None] + torch.arange(v, device=counts.device)  # (B, V)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(2, index[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3]))  # (B, hk, V, hd)

    has = (counts > 0)[:, None]  # (B, 1)
    keys_ok = None if layout.keys_ok is None else layout.keys_ok.gather(1, index)  # (B, V)
    kept = MediaLayout(has, has, has.long(), keys_ok, v)
    return [pick(k) for k in keys], [pick(v_) for v_ in values], kept, has[:, 0].long()
