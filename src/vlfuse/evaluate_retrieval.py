"""Image-text retrieval: recall@1 / @5 / @10 in both directions on held-out image-caption pairs, for any model
kind that scores pairs (``retrieval_scores``: a dual encoder's cosine; a Q-Former's ITC, below).

For a Q-Former (after BLIP-2 stage 1), every image is scored against every text of the set by the ITC similarity
(max over queries of the cosine, ``objectives/itc.py``), as BLIP-2's first retrieval pass; with ``rerank=k`` the top
``k`` candidates of each query are re-scored by ``ITM match logit + ITC similarity`` (BLIP-2 / LAVIS
``compute_sim_matrix``). A text is a correct answer for an image when it equals that image's own caption (scenes
draw the same caption for different images, and those cannot be told apart), and the other way round. Shapes: ``N``
pairs, ``Q`` queries, ``E`` ITC width, ``k`` re-ranked candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vlfuse.objectives.blip2 import pair_processor, pretrainable_qformer
from vlfuse.objectives.itc import image_features, similarity, text_features
from vlfuse.objectives.itm import itm_logits

KS = (1, 5, 10)  # recall@k, each reported when the set has at least k pairs


@torch.no_grad()
def retrieval(model: Any, records: Sequence[dict[str, Any]], batch_size: int = 100,
              rerank: int = 0) -> dict[str, Any]:
    """``{"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", ...: fraction, "n": N, "rerank": k}`` for any model kind whose
    ``retrieval_scores`` scores image-caption pairs (a VLM with a pre-trained Q-Former, a dual encoder)."""
    if len(records) < 5:
        raise ValueError(f"retrieval needs at least 5 pairs, got {len(records)}")
    from vlfuse.data.text_pairs import caption_of

    scores = model.retrieval_scores(records, batch_size, rerank)  # {"i2t": (N, N), "t2i": (N, N)}
    groups: dict[str, int] = {}
    g = torch.tensor([groups.setdefault(" ".join(caption_of(r).lower().split()), len(groups)) for r in records],
                     device=scores["i2t"].device)
    match = g[:, None] == g[None, :]  # (N, N): equal captions cannot be told apart
    out: dict[str, Any] = {}
    for name, s in scores.items():
        truth = match if name == "i2t" else match.t()
        for k in (k for k in KS if k <= len(records)):
            top = s.topk(k, dim=1).indices  # (N, k)
            out[f"{name}_r{k}"] = float(truth.gather(1, top).any(dim=1).float().mean())
    return {**out, "n": len(records), "rerank": rerank}


@torch.no_grad()
def qformer_scores(model: Any, records: Sequence[dict[str, Any]], batch_size: int = 100,
                   rerank: int = 0) -> dict[str, torch.Tensor]:
    """``{"i2t": (N, N), "t2i": (N, N)}`` from a ``VLM`` with a pre-trained Q-Former: ITC similarity, and with
    ``rerank=k`` each row's top ``k`` re-scored by ITM logit + ITC similarity."""
    qf, proc = pretrainable_qformer(model), pair_processor(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    examples = [proc.encode(r) for r in records]
    batches = [proc.collate(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]
    images, feats_i, feats_t = [], [], []
    for batch in batches:
        b = {k: v.to(device) for k, v in batch.items()}
        image = model.encoder(b["pixel_values"])  # (n, P, Dv)
        images.append(image)
        feats_i.append(image_features(qf.heads, qf.encode(image)[0]))  # (n, Q, E)
        feats_t.append(text_features(qf.heads, qf.encode(None, b["text_ids"], b["text_mask"])[1]))  # (n, E)
    sim = similarity(torch.cat(feats_i), torch.cat(feats_t))  # (N, N), row = image
    text_ids, text_mask = _padded([b["text_ids"] for b in batches], [b["text_mask"] for b in batches], device)
    features = torch.cat(images)  # (N, P, Dv)
    scores = {"i2t": sim, "t2i": sim.t()}
    if rerank:
        scores["i2t"] = _rerank(qf, sim, features, text_ids, text_mask, rerank, batch_size, images_first=True)
        scores["t2i"] = _rerank(qf, sim.t(), features, text_ids, text_mask, rerank, batch_size, images_first=False)
    model.train(was_training)
    return scores


def _padded(ids: list[torch.Tensor], masks: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    t = max(x.shape[1] for x in ids)
    pad = [torch.nn.functional.pad(x, (0, t - x.shape[1])) for x in ids]
    padm = [torch.nn.functional.pad(m, (0, t - m.shape[1])) for m in masks]
    return torch.cat(pad).to(device), torch.cat(padm).to(device)


def _rerank(qf: Any, sim: torch.Tensor, features: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, k: int,
            batch_size: int, images_first: bool) -> torch.Tensor:
    """Scores ``(N, N)``: ITM logit + ITC similarity for each row's top ``k``, ``-inf`` elsewhere."""
    k = min(k, sim.shape[1])
    top = sim.topk(k, dim=1).indices  # (N, k)
    rows = torch.arange(sim.shape[0], device=sim.device)[:, None].expand(-1, k).reshape(-1)  # (N*k,)
    cols = top.reshape(-1)
    img, txt = (rows, cols) if images_first else (cols, rows)
    logits = torch.cat([itm_logits(qf, features[img[i:i + batch_size]], ids[txt[i:i + batch_size]],
                                   mask[txt[i:i + batch_size]])[:, 1] for i in range(0, len(rows), batch_size)])
    out = torch.full_like(sim, float("-inf"))
    out[rows, cols] = logits + sim[rows, cols]
    return out
