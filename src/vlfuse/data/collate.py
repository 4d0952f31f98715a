"""Conversations to training batches: chat template, ``<image>`` expansion, labels, padding.

The template is plain text, ``<s> user : {question} assistant : {answer} </s>`` per turn, so the built-in word
tokenizer and any ``AutoTokenizer`` read it alike. Each ``<image>`` becomes ``k`` image tokens, where ``k`` is the
injection's ``placeholder_tokens(V)``. Labels are -100 on prompt, padding and image positions.
Shapes: ``B`` batch, ``S`` padded sequence length, ``N_all`` images in the batch, ``C H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100
USER, ASSISTANT = "user :", "assistant :"


@dataclass
class Example:
    """One tokenised sample: ids with expanded image tokens, labels, and its images as tensors."""

    input_ids: list[int]
    labels: list[int]
    images: list[torch.Tensor] = field(default_factory=list)  # each (C, H, W)
    id: str = ""


def record_images(record: dict[str, Any]) -> list[Any]:
    """A LLaVA record's images as a list: ``"images"``, else ``[record["image"]]``, else ``[]``."""
    return list(record.get("images") or ([record["image"]] if record.get("image") is not None else []))


class Processor:
    """Turns LLaVA-format records into ``Example`` s and batches.

    Args:
        tokenizer: holds ``image_token`` as one token.
        transform: image (PIL / path / tensor) -> ``(C, H, W)``.
        tokens_per_image: positions one image takes (``injector.placeholder_tokens(V)``).
        max_length: the LLM's position limit; longer samples raise before any forward pass.
        visual_tokens: ``V`` per image, for the error message.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, transform: Callable[[Any], torch.Tensor],
                 tokens_per_image: int, max_length: int, image_token: str = "<image>",
                 visual_tokens: int | None = None) -> None:
        self.tok, self.transform = tokenizer, transform
        self.k, self.max_length = tokens_per_image, max_length
        self.v = visual_tokens if visual_tokens is not None else tokens_per_image
        self.image_token = image_token
        self.image_id = tokenizer.convert_tokens_to_ids(image_token)
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = [tokenizer.eos_token_id]

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def encode(self, record: dict[str, Any]) -> Example:
        """A whole conversation; every ``gpt`` turn (plus EOS) is a target."""
        ids, labels = list(self.bos), [IGNORE] * len(self.bos)
        for turn in record["conversations"]:
            if turn["from"] == "human":
                piece = self._ids(f"{USER} {turn['value']} {ASSISTANT}")
                ids += piece
                labels += [IGNORE] * len(piece)
            else:
                piece = self._ids(turn["value"]) + self.eos
                ids += piece
                labels += piece
        return self._finish(ids, labels, record)

    def encode_prompt(self, prompt: str, images: Sequence[Any] = ()) -> Example:
        """A generation prompt: one user turn followed by ``assistant :``."""
        ids = list(self.bos) + self._ids(f"{USER} {prompt} {ASSISTANT}")
        return self._finish(ids, [IGNORE] * len(ids), {"images": list(images), "id": "prompt"})

    def _finish(self, ids: list[int], labels: list[int], record: dict[str, Any]) -> Example:
        images = record_images(record)
        rid = str(record.get("id", "?"))
        n_place = ids.count(self.image_id)
        if n_place != len(images):
            raise ValueError(
                f"sample {rid!r} has {n_place} {self.image_token} placeholder(s) but {len(images)} image(s); "
                f"put exactly one {self.image_token} in the text for each image"
            )
        total = len(ids) - n_place + n_place * self.k
        if total > self.max_length:
            raise ValueError(
                f"sample {rid!r} is too long for the LLM: {len(ids) - n_place} text tokens + {n_place} image(s) x "
                f"{self.k} visual tokens = {total} tokens > {self.max_length} positions; use fewer or smaller images, "
                "a connector with fewer tokens, or a shorter text"
            )
        if n_place:
            ids, labels = self._expand(ids, labels)
        return Example(ids, labels, [self.transform(im) for im in images], rid)

    def _expand(self, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        out_ids: list[int] = []
        out_labels: list[int] = []
        for i, lab in zip(ids, labels):
            if i == self.image_id:
                out_ids += [i] * self.k
                out_labels += [IGNORE] * self.k
            else:
                out_ids.append(i)
                out_labels.append(lab)
        return out_ids, out_labels

    def collate(self, examples: Sequence[Example], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad a list of examples into a batch: ``input_ids, attention_mask, labels (B, S)``,
        ``pixel_values (N_all, C, H, W)`` (absent when no sample has an image) and ``image_counts (B,)``."""
        return collate(examples, self.tok.pad_token_id, padding_side)


def collate(examples: Sequence[Example], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """See ``Processor.collate``."""
    s = max(len(e.input_ids) for e in examples)
    b = len(examples)
    ids = torch.full((b, s), pad_id, dtype=torch.long)
    labels = torch.full((b, s), IGNORE, dtype=torch.long)
    mask = torch.zeros((b, s), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        sl = slice(s - n, s) if padding_side == "left" else slice(0, n)
        ids[i, sl] = torch.tensor(e.input_ids)
        labels[i, sl] = torch.tensor(e.labels)
        mask[i, sl] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels,
             "image_counts": torch.tensor([len(e.images) for e in examples])}
    images = [im for e in examples for im in e.images]
    if images:
        batch["pixel_values"] = torch.stack(images)  # (N_all, C, H, W)
    return batch
