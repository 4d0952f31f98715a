"""Records to training batches: load (built-in scenes or LLaVA-format files), encode once, batch in a
deterministic order that a resumed run can reproduce from the step count alone.

Shapes: ``B`` batch, ``S`` padded length, ``N_all`` images in the batch, ``C H W`` pixels.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from vlfuse.data.collate import Example, Processor


def load_records(data: Any, split: str) -> list[dict[str, Any]]:
    """The records of ``split`` (``"train"`` or ``"eval"``) of ``data`` (a ``DataConfig``).

    Scenes: ``data.train_size`` / ``data.eval_size`` are how many to generate. A file: every record, unless
    ``train_size`` / ``eval_size`` caps it (a line on stderr says so); each kept record's images are checked here,
    before training starts.
    """
    key = "train_size" if split == "train" else "eval_size"
    if data.source == "scenes":
        from vlfuse.data.scenes import generate

        return generate(data.scenes, data.scenes_size(split), data.seed if split == "train" else data.eval_seed)
    path = data.path if split == "train" else data.eval_path
    if path is None:
        return []
    return read_file(path, data.image_folder, getattr(data, key), f"data.{key}", split,
                     data.allow_outside_root)


def read_file(path: str, image_folder: str | None, limit: int | None, limit_name: str, split: str,
              allow_outside_root: bool = False) -> list[dict[str, Any]]:
    """A LLaVA-format file's records, the first ``limit`` of them if set (said on stderr, naming ``limit_name``,
    e.g. ``data.eval_size`` or ``--n``); the kept records' image files are checked (all failures in one error)."""
    from vlfuse.data.llava_checks import check_image_files
    from vlfuse.data.llava_format import read_llava

    records = read_llava(path, image_folder, allow_outside_root=allow_outside_root, check_images=False)
    if limit is not None:
        every = f"without {limit_name} every record is used" if limit_name.startswith("--") else \
            f"{limit_name}=null uses every record"
        print(f"{split} data: {min(limit, len(records))} of {len(records)} records of {path} are used "
              f"({limit_name}={limit}; {every})", file=sys.stderr)
        records = records[:limit]
    check_image_files(records, Path(path))
    return records


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
