"""Zero-shot classification with prompt templates (CLIP, Radford et al., 2021, arXiv:2103.00020, section 3.1.4).

Each class name fills every template ("a picture of a {} ."); the class embedding is the mean of its normalised
template embeddings, normalised again (CLIP's prompt ensembling); an image's class is the one of highest cosine.
The records are image-label pairs: a record's first gpt turn is its label, and the classes are the distinct labels.
Shapes: ``N`` images, ``K`` classes, ``M`` templates, ``E`` embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from vlfuse.data.collate import record_images
from vlfuse.data.text_pairs import caption_of

TEMPLATES = ("a {} .", "a picture of a {} .", "there is a {} .")


@torch.no_grad()
def zeroshot(model: Any, records: Sequence[dict[str, Any]], templates: Sequence[str] = TEMPLATES,
             batch_size: int = 100) -> dict[str, Any]:
    """``{"accuracy": fraction, "per_class": {name: fraction}, "classes": [...], "n": N, "templates": [...]}``."""
    if not hasattr(model, "encode_texts"):
        raise ValueError(f"zero-shot classification embeds texts and images; a {type(model).__name__} does not "
                         "(use a dual encoder, e.g. `vlfuse train --recipe clip`)")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"every template needs one '{{}}' for the class name, got {list(templates)}")
    from vlfuse.kinds.dual_eval import embed_texts

    labels = [" ".join(caption_of(r).split()) for r in records]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"zero-shot classification needs at least 2 classes in the data, got {classes}")
    was_training = model.training
    model.eval()
    emb = embed_texts(model, [t.format(c) for c in classes for t in templates])  # (K*M, E)
    class_emb = F.normalize(emb.view(len(classes), len(templates), -1).mean(dim=1), dim=-1)  # (K, E)
    proc, device = model.processor(), next(model.parameters()).device
    preds = []
    for i in range(0, len(records), batch_size):
        images = proc.images([record_images(r)[0] for r in records[i:i + batch_size]]).to(device)
        preds += (model.encode_images(images) @ class_emb.t()).argmax(dim=1).tolist()  # (n, K) -> (n,)
    model.train(was_training)
    hits = [classes[p] == y for p, y in zip(preds, labels)]
    per = {c: sum(h for h, y in zip(hits, labels) if y == c) / labels.count(c) for c in classes}
    return {"accuracy": sum(hits) / len(hits), "per_class": per, "classes": classes, "n": len(records),
            "templates": list(templates)}
