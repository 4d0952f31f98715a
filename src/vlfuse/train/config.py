"""The run config read by ``vlfuse train``: the model, the data, the loop settings and one or more stages.

A stage is one phase of a recipe (e.g. LLaVA's alignment, then instruction tuning): its own steps, learning
rate, batch, skills and per-component policy ``train | freeze | lora``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from vlfuse.config import component
from vlfuse.data.scenes import ScenesConfig
from vlfuse.train.policy import LoraSettings, Policy

SCENES_SIZES = {"train": 20000, "eval": 800}  # scenes generated when train_size / eval_size are unset


@dataclass(frozen=True)
class DataConfig:
    """Where training and evaluation samples come from.

    ``source="scenes"`` generates ``train_size`` built-in scenes (default 20000) from ``seed`` and ``eval_size``
    held-out ones (default 800) from ``eval_seed``; ``source="llava"`` reads LLaVA-format JSON/JSONL files
    (``path``, ``eval_path``) and uses every record unless ``train_size`` / ``eval_size`` caps it (said on stderr).
    Image paths are relative to ``image_folder`` (default: the JSON file's folder) and must stay inside it.
    """

    source: Literal["scenes", "llava"] = "scenes"
    path: str | None = None
    eval_path: str | None = None
    image_folder: str | None = None  # the data root image paths start from (default: the JSON file's folder)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    train_size: int | None = None  # scenes: how many (None: 20000); a file: use the first N records (None: all)
    eval_size: int | None = None  # scenes: how many (None: 800; 0: no evaluation); a file: the first N (None: all)
    seed: int = 0
    eval_seed: int = 1
    allow_outside_root: bool = False  # accept image paths outside the data root (../, absolute, symlinks out)

    def __post_init__(self) -> None:
        if self.source == "llava" and not self.path:
            raise ValueError("data.source is 'llava' but data.path is empty; set data.path=FILE.json")
        if (self.train_size is not None and self.train_size < 1) or (self.eval_size is not None
                                                                     and self.eval_size < 0):
            raise ValueError(f"data.train_size must be >= 1 and eval_size >= 0 (or unset), got {self.train_size}, "
                             f"{self.eval_size}")
        if self.seed == self.eval_seed and self.source == "scenes":
            raise ValueError(f"data.seed and data.eval_seed are both {self.seed}; evaluation must use other scenes")

    def scenes_size(self, split: str) -> int:
        """How many scenes ``split`` (``"train"`` / ``"eval"``) generates."""
        size = self.train_size if split == "train" else self.eval_size
        return SCENES_SIZES[split] if size is None else size


@dataclass(frozen=True)
class StageConfig:
    """One phase of training. ``skills`` (empty: all) keeps only samples tagged with those skills.

    ``objective`` is what the stage optimises (``vlfuse.objectives.stage``); ``data`` changes the run's data for
    this stage only, as a mapping layered on ``RunConfig.data`` (BLIP-2's stage 1 reads image-caption pairs).
    """

    name: str = "train"
    steps: int = 500
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    clip: float = 1.0
    skills: tuple[str, ...] = ()
    policy: dict[str, Policy] = field(default_factory=lambda: {"encoder": "train", "connector": "train",
                                                                "injector": "train", "llm": "train"})
    lora: LoraSettings = field(default_factory=LoraSettings)
    # lm: next-token loss on answers; blip2: ITC + ITM + ITG on pairs; contrastive: a dual encoder's loss on pairs
    objective: Literal["lm", "blip2", "contrastive"] = "lm"
    data: dict[str, Any] = field(default_factory=dict)  # e.g. {scenes: {skills: {caption: 1}}}; {}: the run's

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "grad_accum"):
            if getattr(self, key) < 1:
                raise ValueError(f"stage {self.name!r}: {key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.lr < 1:
            raise ValueError(f"stage {self.name!r}: lr must be in (0, 1), got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:  # the cosine ends at lr * min_lr_ratio: below 0 the lr turns negative
            raise ValueError(f"stage {self.name!r}: min_lr_ratio must be in [0, 1] (the final lr as a fraction of "
                             f"lr), got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"stage {self.name!r}: warmup_steps must be >= 0 (0: no warm-up), got {self.warmup_steps}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"stage {self.name!r}: betas must be two numbers in [0, 1) (AdamW's beta1, beta2), "
                             f"got {list(self.betas)}")
        for key in ("weight_decay", "clip"):
            if not getattr(self, key) >= 0:  # `not >=` also refuses nan
                raise ValueError(f"stage {self.name!r}: {key} must be >= 0 (0: off), got {getattr(self, key)}")
        known = _known_components()
        bad = sorted(set(self.policy) - set(known))
        if bad:
            raise ValueError(f"stage {self.name!r}: unknown component(s) {bad} in policy; use {', '.join(known)}")
        wrong = {k: v for k, v in self.policy.items() if v not in ("train", "freeze", "lora")}
        if wrong:
            raise ValueError(f"stage {self.name!r}: policy {wrong} is not one of train, freeze, lora")


def _known_components() -> list[str]:
    """Every component name some model kind's policy can set (``components`` of each ``MODELS`` entry)."""
    from vlfuse.kinds import model_names
    from vlfuse.registry import MODELS

    return list(dict.fromkeys(c for n in model_names() for c in MODELS.get(n).cls.components))


@dataclass(frozen=True)
class LoopConfig:
    """Settings shared by all stages. ``precision="auto"`` is bf16 autocast on a GPU that supports it, else fp32."""

    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int = 0
    log_every: int = 20
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_batch_size: int = 100

    def __post_init__(self) -> None:
        check_device(self.device, "train.device")
        if not 0 <= self.seed < 2**32:  # numpy's range
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: torch's default), got {self.threads}")
        for key in ("log_every", "checkpoint_every", "keep_checkpoints", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


def check_device(name: str, flag: str, fallback: str = "cpu or auto") -> None:
    """Refuse a device name torch would reject late (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), or a CUDA
    device on a machine without one, with the fix."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N, mps; set {flag} to one of them")
    if name.startswith("cuda"):
        import torch

        if not torch.backends.cuda.is_built():
            raise ValueError(f"device {name!r}: this torch build has no CUDA; use {flag}={fallback}")
        count = torch.cuda.device_count()
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA device(s); use {flag}={fallback}"
                             + (f", or cuda:0 to cuda:{count - 1}" if count else ""))
    elif name == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ValueError(f"device 'mps': this machine has no MPS device; use {flag}={fallback}")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``vlfuse train`` needs; saved as ``run.json`` beside the checkpoints."""

    model: Any = component("MODELS", "vlm", implicit=True)  # VLMConfig, DualEncoderConfig, ...: picked by kind
    data: DataConfig = field(default_factory=DataConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    stages: tuple[StageConfig, ...] = (StageConfig(),)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages is empty; give at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        for stage in self.stages:
            self.stage_data(stage)  # a bad key or value in a stage's data fails here, naming the stage

    def stage_data(self, stage: StageConfig) -> DataConfig:
        """The data ``stage`` reads: ``self.data`` with the stage's ``data`` mapping layered on."""
        if not stage.data:
            return self.data
        from vlfuse.config import from_dict, to_dict

        merged = to_dict(self.data)
        _layer(merged, json.loads(json.dumps(stage.data)))
        return from_dict(DataConfig, merged, f"stage {stage.name!r} data")


def _layer(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Recursively set ``src``'s keys in ``dst`` (mappings merge, other values replace)."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _layer(dst[key], value)
        else:
            dst[key] = value
