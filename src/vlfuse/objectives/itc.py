"""Image-text contrastive learning (ITC), BLIP-2 stage 1 (Li et al., 2023, arXiv:2301.12597, section 3.2).

Under the unimodal mask (queries and text do not see each other) each of an image's ``Q`` query outputs and the
text's [CLS] output are projected to ``E`` and L2-normalised; the image-text similarity is the highest cosine over
the queries. A symmetric InfoNCE over the batch (learnable temperature, label smoothing 0.1 as LAVIS) pulls
matching pairs together. Texts that are equal (the same caption drawn twice) count as positives of each other,
their target mass split evenly, as BLIP's ``idx``-based targets do.
Reference: LAVIS ``blip2_qformer.py``; ``transformers.Blip2ForImageTextRetrieval`` (``use_image_text_matching_head=
False``) gives the same similarities (``tests/parity/test_blip2.py``).
Shapes: ``B`` images, ``B'`` texts, ``Q`` queries, ``H`` Q-Former width, ``E`` ITC width.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

LABEL_SMOOTHING = 0.1  # LAVIS, for ITC and ITG
TEMP_RANGE = (0.001, 0.5)  # LAVIS clamps the learned temperature to this range


def image_features(heads: Any, query_out: torch.Tensor) -> torch.Tensor:
    """``(B, Q, H)`` query outputs -> normalised ``(B, Q, E)``."""
    return F.normalize(heads.vision_proj(query_out), dim=-1)


def text_features(heads: Any, text_out: torch.Tensor) -> torch.Tensor:
    """``(B', T, H)`` text outputs -> the normalised [CLS] projection ``(B', E)``."""
    return F.normalize(heads.text_proj(text_out[:, 0]), dim=-1)


def similarity(image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
    """``(B, Q, E)``, ``(B', E)`` -> ``(B, B')``: max over queries of the cosine (no temperature)."""
    return torch.einsum("bqe,te->btq", image_feats, text_feats).amax(dim=-1)  # (B, B')


def temperature(heads: Any) -> torch.Tensor:
    """The learned temperature, clamped to ``TEMP_RANGE`` (a clamp in the graph, not an in-place update)."""
    return heads.temp.clamp(*TEMP_RANGE)


def positives(groups: torch.Tensor) -> torch.Tensor:
    """``(B,)`` text group ids (equal ids: equal texts) -> ``(B, B)`` bool, True where a pair matches."""
    return groups[:, None] == groups[None, :]


def itc_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of ``logits (B, B)`` (similarity / temperature; row = image) with positives ``same``."""
    targets = same.float() / same.sum(dim=1, keepdim=True)  # (B, B), rows sum to 1
    i2t = F.cross_entropy(logits.float(), targets, label_smoothing=LABEL_SMOOTHING)
    t2i = F.cross_entropy(logits.float().t(), targets.t() / targets.t().sum(1, keepdim=True),
                          label_smoothing=LABEL_SMOOTHING)
    return (i2t + t2i) / 2
