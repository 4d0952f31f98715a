"""Image-text pairs for BLIP-2 stage 1: each record's image and its first answer (a caption) as Q-Former text.

The text is ``[CLS] caption </s>`` in the VLM's own tokenizer ids; [CLS] is the Q-Former's reserved id
(``QFormerConfig.cls_id``; ITG swaps it for [DEC]). Equal captions in a batch get the same ``text_group``, so the
objectives treat them as matches of each other rather than as negatives.
Shapes: ``B`` batch, ``T`` padded text length, ``C H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from vlfuse.data.collate import record_images


@dataclass
class PairExample:
    """One image (``(C, H, W)``) and its text ids (``[CLS] ... </s>``)."""

    ids: list[int]
    image: torch.Tensor
    text: str
    id: str = ""


class PairProcessor:
    """Turns LLaVA-format records with one image into ``PairExample`` s and batches (same interface as
    ``vlfuse.data.collate.Processor``, so ``EncodedDataset`` serves both).

    Args:
        tokenizer: the VLM's tokenizer; ``cls_id`` must not be one of its ids.
        transform: image (PIL / path / tensor) -> ``(C, H, W)``.
        cls_id: the Q-Former's [CLS] id.
        max_length: the Q-Former's text positions.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, transform: Callable[[Any], torch.Tensor], cls_id: int,
                 max_length: int) -> None:
        self.tok, self.transform, self.cls_id, self.max_length = tokenizer, transform, cls_id, max_length

    def encode(self, record: dict[str, Any]) -> PairExample:
        images = record_images(record)
        rid = str(record.get("id", "?"))
        if len(images) != 1:
            raise ValueError(f"sample {rid!r} has {len(images)} images; an image-text pair needs exactly one "
                             "(keep single-image skills, e.g. `skills: [caption]`, in this stage)")
        text = next((t["value"] for t in record["conversations"] if t["from"] == "gpt"), None)
        if text is None:
            raise ValueError(f"sample {rid!r} has no gpt turn to use as the image's text")
        ids = [self.cls_id, *self.tok(text, add_special_tokens=False).input_ids, self.tok.eos_token_id]
        if len(ids) > self.max_length:
            raise ValueError(f"sample {rid!r}: text of {len(ids)} tokens exceeds the qformer's {self.max_length} "
                             "positions; raise connector.max_text_positions")
        return PairExample(ids, self.transform(images[0]), " ".join(text.lower().split()), rid)

    def collate(self, examples: Sequence[PairExample]) -> dict[str, torch.Tensor]:
        """``pixel_values (B, C, H, W)``, ``text_ids / text_mask (B, T)`` (right-padded), ``text_group (B,)``."""
        t = max(len(e.ids) for e in examples)
        ids = torch.full((len(examples), t), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(examples), t), dtype=torch.long)
        for i, e in enumerate(examples):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
            mask[i, : len(e.ids)] = 1
        groups: dict[str, int] = {}
        group = torch.tensor([groups.setdefault(e.text, len(groups)) for e in examples])
        return {"pixel_values": torch.stack([e.image for e in examples]), "text_ids": ids, "text_mask": mask,
                "text_group": group}
