"""BLIP-2 stage 1 (Li et al., 2023, arXiv:2301.12597): ITC + ITM + ITG on image-text pairs, summed as in LAVIS.

The vision encoder runs once per batch; the Q-Former runs three times, once per objective mask (unimodal,
bidirectional over ``3B`` pairs with hard negatives, multimodal causal). ``pair_processor`` builds the batches
(``vlfuse.data.pairs``). Shapes: ``B`` pairs, ``P`` patches, ``Dv`` vision width, ``T`` text length.
"""

from __future__ import annotations

from typing import Any

import torch

from vlfuse.data.pairs import PairProcessor
from vlfuse.objectives.itc import image_features, itc_loss, positives, similarity, temperature, text_features
from vlfuse.objectives.itg import itg_loss
from vlfuse.objectives.itm import itm_loss


def pretrainable_qformer(model: Any) -> Any:
    """The model's Q-Former, checked to have the text path and heads that stage 1 trains."""
    from vlfuse.connectors.qformer import QFormer

    qf = model.connector
    if not isinstance(qf, QFormer):
        raise ValueError(f"objective 'blip2' trains a Q-Former, but the connector is {type(qf).__name__}; "
                         "set model.connector.kind=qformer")
    if qf.heads is None:
        raise ValueError(f"objective 'blip2' needs the Q-Former's text path; set model.connector.vocab_size >= "
                         f"{len(model.tokenizer) + 2} (the tokenizer's size + [CLS] + [DEC])")
    return qf


def pair_processor(model: Any) -> PairProcessor:
    """The batches of BLIP-2 stage 1 for ``model`` (a ``VLM`` with a pre-trainable Q-Former)."""
    qf = pretrainable_qformer(model)
    c = qf.config
    if c.cls_token_id is None and len(model.tokenizer) > c.vocab_size - 2:
        raise ValueError(f"qformer vocab_size={c.vocab_size} keeps its last two ids for [CLS] and [DEC], but the "
                         f"tokenizer has {len(model.tokenizer)} tokens; set model.connector.vocab_size >= "
                         f"{len(model.tokenizer) + 2}")
    transform = model.encoder.image_transform(model.config.image)
    return PairProcessor(model.tokenizer, transform, c.cls_id, c.max_text_positions)


def blip2_losses(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"itc", "itm", "itg"}`` losses of one batch from ``PairProcessor.collate``."""
    qf = pretrainable_qformer(model)
    image = model.encoder(batch["pixel_values"])  # (B, P, Dv)
    ids, mask = batch["text_ids"], batch["text_mask"]
    if ids.shape[0] < 2:
        raise ValueError("BLIP-2 stage 1 contrasts pairs within a batch; use batch_size >= 2")
    same = positives(batch["text_group"])  # (B, B)
    queries, text = qf.encode(image, ids, mask, "unimodal")  # (B, Q, H), (B, T, H)
    logits = similarity(image_features(qf.heads, queries), text_features(qf.heads, text)) / temperature(qf.heads)
    return {"itc": itc_loss(logits, same), "itm": itm_loss(qf, image, ids, mask, logits, same),
            "itg": itg_loss(qf, image, ids, mask)}


def blip2_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """ITC + ITM + ITG, unweighted."""
    return sum(blip2_losses(model, batch).values())  # type: ignore[return-value]
