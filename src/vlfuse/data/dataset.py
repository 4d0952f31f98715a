"""Records to training batches: load (built-in scenes or LLaVA-format files), encode once, batch in a
deterministic order that a resumed run can reproduce from the step count alone.

Shapes: ``B`` batch, ``S`` padded length, ``N_all`` images in the batch, ``C H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from vlfuse.data.collate import Example, Processor


def load_records(data: Any, split: str) -> list[dict[str, Any]]:
    """``split`` is ``"train"`` or ``"eval"``; ``data`` is a ``DataConfig``."""
    if data.source == "scenes":
        from vlfuse.data.scenes import generate

        if split == "train":
            return generate(data.scenes, data.train_size, data.seed)
        return generate(data.scenes, data.eval_size, data.eval_seed)
    from vlfuse.data.llava_format import read_llava

    path = data.path if split == "train" else data.eval_path
    if path is None:
        return []
    records = read_llava(path, data.image_folder)
    limit = data.train_size if split == "train" else data.eval_size
    return records[:limit] if limit else records


def record_texts(records: Sequence[dict[str, Any]], image_token: str = "<image>") -> list[str]:
    """The text of every turn, ``image_token`` taken out: what the built-in BPE tokenizer trains on."""
    return [turn["value"].replace(image_token, " ") for r in records for turn in r["conversations"]]


def scene_texts(scenes: Any) -> list[str]:
    """Every word the scenes can write (``scenes`` is a ``ScenesConfig``), each as it appears in a sentence
    (``" circle"``), so the BPE learns each one as a single token."""
    from vlfuse.data.scenes import scene_vocabulary

    return [f" {w}" for w in scene_vocabulary(scenes)]


class EncodedDataset:
    """Tokenised examples, encoded on first use and kept (images become ``(C, H, W)`` tensors once).

    Args:
        records: LLaVA-format records (images as PIL images, paths or tensors).
        processor: the model's ``Processor``.
        skills: keep only records whose ``"skill"`` is in it (empty: keep all).
        cache: keep encoded examples in memory (images of a large on-disk dataset may not fit: pass False).
    """

    def __init__(self, records: Sequence[dict[str, Any]], processor: Processor, skills: Sequence[str] = (),
                 cache: bool = True) -> None:
        self.records = [r for r in records if not skills or r.get("skill") in skills]
        if not self.records:
            have = sorted({str(r.get("skill")) for r in records})
            raise ValueError(f"no training samples for skills {list(skills)}; the data has skills {have}")
        self.processor, self.cache = processor, cache
        self._encoded: dict[int, Example] = {}
        self._order: tuple[tuple[int, int] | None, torch.Tensor] = (None, torch.empty(0))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Example:
        ex = self._encoded.get(i)
        if ex is None:
            ex = self.processor.encode(self.records[i])
            if self.cache:
                self._encoded[i] = ex
        return ex

    def order(self, epoch: int, seed: int) -> torch.Tensor:
        """The shuffled index order of one epoch, a pure function of ``(seed, epoch)``."""
        key = (seed, epoch)
        if self._order[0] != key:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            self._order = (key, torch.randperm(len(self), generator=g))
        return self._order[1]

    def batch(self, index: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        """Micro-batch number ``index`` of the endless shuffled stream (epochs follow each other)."""
        n = len(self)
        start = index * batch_size
        picks = [int(self.order(pos // n, seed)[pos % n]) for pos in range(start, start + batch_size)]
        return self.processor.collate([self[i] for i in picks])

    def batches(self, start: int, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        """Micro-batches ``start, start + 1, ...``."""
        index = start
        while True:
            yield self.batch(index, batch_size, seed)
            index += 1
