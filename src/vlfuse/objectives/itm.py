"""Image-text matching (ITM) with hard negatives, BLIP-2 stage 1 (Li et al., 2023, arXiv:2301.12597).

Under the bidirectional mask queries and text see each other; the ITM head (a linear layer to 2 classes) is
applied to every query output and averaged over the queries (``transformers.Blip2ForImageTextRetrieval``'s
``itm_head(...).mean(1)``). Each image gets one negative text and each text one negative image, drawn from the
batch with probability ``softmax`` of their ITC logits, the positive (and any text equal to it) excluded, as
ALBEF / BLIP / BLIP-2 mine hard negatives. The matching pairs are labelled 1, the two sets of negatives 0.
Shapes: ``B`` pairs, ``P`` patches, ``Dv`` vision width, ``T`` text length, ``Q`` queries, ``H`` Q-Former width.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def itm_logits(qformer: Any, image: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """``image (B, P, Dv)``, ``text_ids / text_mask (B, T)`` -> match logits ``(B, 2)`` (class 1: they match)."""
    queries, _ = qformer.encode(image, text_ids, text_mask, "bidirectional")  # (B, Q, H)
    return qformer.heads.itm(queries).mean(dim=1)  # (B, 2)


def sample_hard_negatives(logits: torch.Tensor, same: torch.Tensor,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw one negative text per image and one negative image per text from ``softmax(logits)`` rows.

    ``logits (B, B)``: ITC logits, row = image; ``same (B, B)``: True where a pair matches (never drawn).
    Returns ``(text index per image (B,), image index per text (B,), usable (B, 2))``; ``usable[:, 0]`` is False
    for an image whose row has no other text (every text in the batch matches it), ``[:, 1]`` likewise per text.
    """
    def draw(rows: torch.Tensor, forbid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = rows.float().masked_fill(forbid, float("-inf"))
        usable = ~forbid.all(dim=1)  # (B,)
        probs = torch.where(usable[:, None], rows.softmax(dim=1), torch.ones_like(rows))  # no NaN rows
        return torch.multinomial(probs.nan_to_num(0.0), 1, generator=generator).squeeze(1), usable

    with torch.no_grad():
        neg_text, ok_image = draw(logits, same)  # per image (rows)
        neg_image, ok_text = draw(logits.t(), same.t())  # per text
    return neg_text, neg_image, torch.stack([ok_image, ok_text], dim=1)


def itm_loss(qformer: Any, image: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor,
             logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over ``3B`` pairs: ``B`` matching, ``B`` (text, hard negative image), ``B`` (image, hard
    negative text); ``logits (B, B)`` are the ITC logits (detached here), ``same (B, B)`` the positives."""
    neg_text, neg_image, usable = sample_hard_negatives(logits.detach(), same)
    images = torch.cat([image, image[neg_image], image], dim=0)  # (3B, P, Dv)
    ids = torch.cat([text_ids, text_ids, text_ids[neg_text]], dim=0)  # (3B, T)
    mask = torch.cat([text_mask, text_mask, text_mask[neg_text]], dim=0)  # (3B, T)
    b = image.shape[0]
    labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(image.device)  # (3B,)
    keep = torch.cat([torch.ones_like(usable[:, 0]), usable[:, 1], usable[:, 0]])  # a batch of equal texts: none
    labels = labels.masked_fill(~keep, -100)
    return F.cross_entropy(itm_logits(qformer, images, ids, mask).float(), labels, ignore_index=-100)
