"""Contrastive image-text losses of two-tower models: symmetric InfoNCE (CLIP) and pairwise sigmoid (SigLIP).

CLIP (Radford et al., 2021, arXiv:2103.00020): softmax cross-entropy over the batch, image -> text and text ->
image, averaged. SigLIP (Zhai et al., 2023, arXiv:2303.15343): every image-text pair is a binary problem,
``-log sigmoid(z_ij * (t * <x_i, y_j> + b))`` with ``z = +1`` on matching pairs and ``-1`` elsewhere, summed and
divided by the batch. Both take L2-normalised features and the learned ``logit_scale`` (``t = exp(logit_scale)``).
Reference: ``transformers`` ``CLIPModel`` / ``SiglipModel`` (``return_loss=True``), which these equal
(``tests/parity/test_dual_encoder_parity.py``); open_clip ``loss.py`` for the gathered form.

Features may come from several processes: with a ``group`` (``torch.distributed``), each process gathers the
others' features (with gradients, ``torch.distributed.nn.all_gather``) and scores its own ``B`` rows against all
``W * B`` columns, its positives at columns ``rank * B + i``; the mean over processes of these local losses (what
data-parallel gradient averaging takes) is the loss of the whole batch. With ``group=None`` (one process, what runs
now) nothing is gathered.
Shapes: ``B`` pairs per process, ``W`` processes, ``E`` embedding width.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def gather(features: torch.Tensor, group: Any = None) -> tuple[torch.Tensor, int]:
    """``(B, E)`` local features -> ``(W * B, E)`` of every process in ``group`` and this process' row offset.

    ``group=None`` or a one-process group returns ``features`` and 0.
    """
    if group is None:
        return features, 0
    import torch.distributed as dist
    import torch.distributed.nn as dist_nn

    if dist.get_world_size(group) == 1:
        return features, 0
    parts = dist_nn.all_gather(features, group=group)  # W x (B, E), differentiable
    return torch.cat(parts), dist.get_rank(group) * features.shape[0]


def _positives(b: int, columns: int, offset: int, same: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """``(B, columns)`` bool: True at each row's match (``same`` marks equal texts as matches too)."""
    if same is not None:
        if columns != b:
            raise ValueError("same= (equal captions as positives) works within one process; pass group=None")
        return same.to(device=device, dtype=torch.bool)
    pos = torch.zeros(b, columns, dtype=torch.bool, device=device)
    pos[torch.arange(b, device=device), offset + torch.arange(b, device=device)] = True
    return pos


def infonce_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                 same: torch.Tensor | None = None, group: Any = None) -> torch.Tensor:
    """Symmetric InfoNCE of normalised ``image (B, E)`` and ``text (B, E)`` features (row ``i`` of each a pair).

    ``same (B, B)`` (optional, one process): True where two pairs share their caption; the target mass of a row is
    split evenly over its matches (a scenes batch draws equal captions for different images).
    """
    all_text, offset = gather(text, group)  # (W*B, E)
    all_image, _ = gather(image, group)
    scale = logit_scale.exp()
    i2t = scale * image @ all_text.t()  # (B, W*B), row = image
    t2i = scale * text @ all_image.t()  # (B, W*B), row = text
    pos = _positives(image.shape[0], all_text.shape[0], offset, same, image.device)
    targets = pos.float() / pos.sum(dim=1, keepdim=True)  # (B, W*B), rows sum to 1
    targets_t = pos.t().float() if same is not None else targets
    targets_t = targets_t / targets_t.sum(dim=1, keepdim=True)
    return (F.cross_entropy(i2t.float(), targets) + F.cross_entropy(t2i.float(), targets_t)) / 2


def sigmoid_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor,
                 same: torch.Tensor | None = None, group: Any = None) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss of normalised ``image (B, E)`` and ``text (B, E)`` features.

    Every (image, text) pair counts once: ``-sum log sigmoid(z * logits) / B`` over the ``B x W*B`` pairs this
    process scores, ``logits = exp(logit_scale) * <x, y> + logit_bias``; ``same`` as in ``infonce_loss``.
    """
    all_text, offset = gather(text, group)  # (W*B, E)
    logits = logit_scale.exp() * image @ all_text.t() + logit_bias  # (B, W*B), row = image
    pos = _positives(image.shape[0], all_text.shape[0], offset, same, image.device)
    signs = pos.float() * 2 - 1  # +1 on matches, -1 elsewhere
    return -F.logsigmoid(signs * logits.float()).sum() / image.shape[0]
