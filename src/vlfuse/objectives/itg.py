"""Image-grounded text generation (ITG), BLIP-2 stage 1 (Li et al., 2023, arXiv:2301.12597).

Under the multimodal causal mask the queries see only each other (so they must gather, from the image, all the
text needs) and each text token sees every query and the text before it. The text starts with [DEC] in place of
[CLS]; BERT's LM head (dense, activation, LayerNorm, then a decoder tied to the word embeddings) predicts each
next token, with label smoothing 0.1 as LAVIS. Padding is never a target.
Shapes: ``B`` pairs, ``P`` patches, ``Dv`` vision width, ``T`` text length, ``H`` Q-Former width, ``W`` vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vlfuse.objectives.itc import LABEL_SMOOTHING


def itg_logits(qformer: Any, image: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """``image (B, P, Dv)``, ``text_ids (B, T)`` ([CLS] first) -> next-token logits ``(B, T, W)``.

    The first id is replaced by [DEC] here, so the same batch serves ITC, ITM and ITG.
    """
    heads = qformer.heads
    ids = text_ids.clone()
    ids[:, 0] = qformer.config.dec_id
    _, text = qformer.encode(image, ids, text_mask, "causal")  # (B, T, H)
    hidden = heads.lm_norm(heads.act(heads.lm_dense(text)))  # (B, T, H)
    return F.linear(hidden, qformer.word_emb.weight, heads.lm_bias)  # (B, T, W)


def itg_loss(qformer: Any, image: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits at ``t`` against the token at ``t + 1`` (real tokens only)."""
    logits = itg_logits(qformer, image, text_ids, text_mask)[:, :-1]  # (B, T-1, W)
    targets = text_ids[:, 1:].masked_fill(~text_mask[:, 1:].bool(), -100)  # (B, T-1)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                           label_smoothing=LABEL_SMOOTHING)
