"""Batches for a dual encoder: images and texts, each tokenised by the text tower's tokenizer on its own.

``encode(record)`` / ``collate(examples)`` serve training and retrieval (a LLaVA record's one image and its first
answer, a caption); ``__call__(text=, images=)`` is the user path. Text is right-padded to the longest in the batch
or, for SigLIP (``padding="max_length"``), to the tower's full length: SigLIP pools the last position, so its
embedding depends on how much padding follows the text, and it was trained with full-length padding.
Equal captions in a batch share a ``text_group`` id, so the losses treat them as matches of each other.
Shapes: ``B`` pairs, ``T`` padded text length, ``C H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase

from vlfuse.data.collate import record_images


@dataclass
class TextPair:
    """One image (``(C, H, W)``) and its text ids."""

    ids: list[int]
    image: torch.Tensor
    text: str
    id: str = ""


def caption_of(record: dict[str, Any]) -> str:
    """The first gpt turn of a LLaVA record (its caption, for image-caption data)."""
    text = next((t["value"] for t in record.get("conversations", []) if t["from"] == "gpt"), None)
    if text is None:
        raise ValueError(f"sample {record.get('id', '?')!r} has no gpt turn to use as the image's text")
    return text


class DualProcessor:
    """Images and texts for a dual encoder.

    Args:
        tokenizer: the text tower's tokenizer (a pad token is required).
        transform: image (PIL / path / tensor) -> ``(C, H, W)``.
        max_length: the text tower's positions; longer texts raise.
        padding: ``longest`` or ``max_length`` (SigLIP).
        eos_token_id: appended when the tokenizer does not end texts with it (pooling at the end of text needs it).

    Example:
        >>> batch = model.processor()(text=["a red circle ."], images=[image])
        >>> sorted(batch)
        ['attention_mask', 'input_ids', 'pixel_values']
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, transform: Callable[[Any], torch.Tensor], max_length: int,
                 padding: Literal["longest", "max_length"] = "longest", eos_token_id: int | None = None) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("the text tokenizer has no pad token; set tokenizer.pad_token before building the model")
        self.tok, self.transform, self.max_length, self.padding = tokenizer, transform, max_length, padding
        self.eos_token_id = eos_token_id

    def text_ids(self, text: str, rid: str = "?") -> list[int]:
        """Token ids of ``text`` with the tokenizer's special tokens (and EOS last, when asked)."""
        ids = list(self.tok(text).input_ids)
        if self.eos_token_id is not None and (not ids or ids[-1] != self.eos_token_id):
            ids.append(self.eos_token_id)
        if len(ids) > self.max_length:
            raise ValueError(f"sample {rid!r}: text of {len(ids)} tokens exceeds the text tower's {self.max_length} "
                             "positions; shorten it or raise model.text.max_length")
        return ids

    def encode(self, record: dict[str, Any]) -> TextPair:
        images, rid = record_images(record), str(record.get("id", "?"))
        if len(images) != 1:
            raise ValueError(f"sample {rid!r} has {len(images)} images; an image-text pair needs exactly one "
                             "(keep single-image skills, e.g. `skills: {caption: 1}`, in this stage)")
        text = caption_of(record)
        return TextPair(self.text_ids(text, rid), self.transform(images[0]), " ".join(text.lower().split()), rid)

    def texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids / attention_mask (B, T)``, right-padded as ``padding`` says."""
        return self.pad([self.text_ids(t) for t in texts])

    def pad(self, rows: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Token id lists -> ``input_ids / attention_mask (B, T)``, right-padded to the longest or to max_length."""
        t = self.max_length if self.padding == "max_length" else max(len(r) for r in rows)
        ids = torch.full((len(rows), t), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), t), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def images(self, images: Sequence[Any]) -> torch.Tensor:
        """``(N, C, H, W)``."""
        return torch.stack([self.transform(im) for im in images])

    def collate(self, examples: Sequence[TextPair]) -> dict[str, torch.Tensor]:
        """``pixel_values (B, C, H, W)``, ``input_ids / attention_mask (B, T)``, ``text_group (B,)``."""
        batch = self.pad([e.ids for e in examples])
        groups: dict[str, int] = {}
        batch["text_group"] = torch.tensor([groups.setdefault(e.text, len(groups)) for e in examples])
        return {"pixel_values": torch.stack([e.image for e in examples]), **batch}

    def __call__(self, text: Sequence[str] | None = None, images: Sequence[Any] | None = None) -> dict[str, Any]:
        """``text`` -> ``input_ids / attention_mask``; ``images`` (one per entry) -> ``pixel_values``."""
        if text is None and images is None:
            raise ValueError("give text=, images= or both")
        out: dict[str, Any] = {}
        if text is not None:
            out.update(self.texts([text] if isinstance(text, str) else list(text)))
        if images is not None:
            out["pixel_values"] = self.images(list(images))
        return out
