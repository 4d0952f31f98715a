"""Hugging Face vision towers (CLIP, SigLIP, ...) as vlfuse encoders, with LLaVA's feature-layer choice.

LLaVA (Liu et al., 2023, arXiv:2304.08485; 1.5: arXiv:2310.03744) takes the hidden states of the penultimate
layer (``feature_layer=-2``) and drops the first feature (``select="default"``), CLIP's CLS; ``select="full"``
keeps every feature. As in ``transformers``, ``default`` drops the first feature whatever the tower: a SigLIP
tower has no CLS, so it loses its first real patch (``P - 1`` features), as a SigLIP LLaVA saved with it was trained.
Reference: ``transformers.LlavaModel.get_image_features``.
Shapes: ``C`` channels, ``H W`` pixels, ``P`` patches per image, ``Dv`` tower width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig

from vlfuse.encoders.base import VisionEncoder
from vlfuse.hub import NO_REMOTE_CODE, check_folder
from vlfuse.registry import ENCODERS

# per model_type: does the tower prepend a CLS token, and the normalisation its released weights use
TOWERS: dict[str, dict[str, Any]] = {
    "clip_vision_model": {
        "cls": True,
        "mean": (0.48145466, 0.4578275, 0.40821073),
        "std": (0.26862954, 0.26130258, 0.27577711),
    },
    "siglip_vision_model": {"cls": False, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
}


@dataclass(frozen=True)
class HFVisionConfig:
    kind: Literal["hf"] = "hf"
    path: str | None = None  # local folder of a CLIP/SigLIP (vision) model; weights are loaded from it
    config: dict[str, Any] = field(default_factory=dict)  # or a transformers config, e.g. {"model_type": ...}
    feature_layer: int = -2  # hidden-state index handed on (LLaVA: -2, the penultimate layer)
    select: Literal["default", "full"] = "default"  # "default" drops the first feature (LLaVA), "full" keeps all
    image_mean: tuple[float, ...] | None = None  # None: read from preprocessor_config.json or the tower table
    image_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.path is None and self.config:  # keys checked against the tower's config class, numbers coerced
            from vlfuse.llm import check_hf_config

            checked = check_hf_config(self.config, "clip_vision_model", "config", [*TOWERS, "clip", "siglip"])
            object.__setattr__(self, "config", checked)


def _vision_config(cfg: HFVisionConfig) -> PretrainedConfig:
    if cfg.path is not None:
        check_folder(cfg.path, "encoder.path", weights=True)  # no code from the folder, no pickled weights
        hf = AutoConfig.from_pretrained(cfg.path, **NO_REMOTE_CODE)
    elif cfg.config:
        kwargs = dict(cfg.config)
        hf = AutoConfig.for_model(kwargs.pop("model_type", "clip_vision_model"), **kwargs)
    else:
        raise ValueError("encoder kind 'hf' needs `path` (a local model folder) or `config` (a transformers config)")
    return getattr(hf, "vision_config", hf)  # a full CLIP/SigLIP config carries the tower's config inside


@ENCODERS.register("hf", HFVisionConfig)
class HFVisionEncoder(VisionEncoder):
    """A ``transformers`` vision tower; features are the hidden states of ``feature_layer``.

    Args:
        config: ``HFVisionConfig``.

    Example:
        >>> enc = HFVisionEncoder(HFVisionConfig(config={"model_type": "clip_vision_model", "hidden_size": 32,
        ...     "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 8,
        ...     "patch_size": 2}))
        >>> enc(torch.randn(1, 3, 8, 8)).shape  # 16 patches, CLS dropped
        torch.Size([1, 16, 32])
    """

    def __init__(self, config: HFVisionConfig) -> None:
        super().__init__()
        self.config = config
        vcfg = _vision_config(config)
        if vcfg.model_type not in TOWERS:
            raise ValueError(f"vision tower model_type {vcfg.model_type!r} is not supported; choices: {list(TOWERS)}")
        if config.path is not None:
            self.tower = _load_tower(config.path, vcfg)
        else:
            self.tower = AutoModel.from_config(vcfg)
        table = TOWERS[vcfg.model_type]
        self.has_cls = table["cls"]
        self.embed_dim = vcfg.hidden_size
        self.image_size = vcfg.image_size
        self.patch_size = vcfg.patch_size
        self.in_channels = getattr(vcfg, "num_channels", 3)
        mean, std = _normalisation(config.path)
        self.image_mean = tuple(config.image_mean or mean or table["mean"])
        self.image_std = tuple(config.image_std or std or table["std"])

    def hf_config(self) -> dict[str, Any]:
        """The tower's transformers config as a dict (what ``save_pretrained`` stores)."""
        return self.tower.config.to_dict()

    def num_patches(self, height: int, width: int) -> int:
        drop = int(self.config.select == "default")  # the first feature: CLS, or SigLIP's first patch
        return (height // self.patch_size) * (width // self.patch_size) + int(self.has_cls) - drop

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B*N, C, H, W) -> (B*N, P, Dv)``."""
        self.check_pixels(pixel_values)
        out = self.tower(pixel_values=pixel_values, output_hidden_states=True)
        feats = out.hidden_states[self.config.feature_layer]  # (B*N, [1 +] P, Dv)
        if self.config.select == "default":
            feats = feats[:, 1:]  # drop the first feature, CLS or not (as transformers' LLaVA): (B*N, P', Dv)
        return feats


def _load_tower(path: str, vcfg: PretrainedConfig) -> torch.nn.Module:
    """Load a tower from a local folder holding either the tower alone or a full CLIP/SigLIP model."""
    if not hasattr(AutoConfig.from_pretrained(path, **NO_REMOTE_CODE), "vision_config"):
        return AutoModel.from_pretrained(path, use_safetensors=True, **NO_REMOTE_CODE)
    # two towers: keep the vision one, with the same keys as alone
    full = AutoModel.from_pretrained(path, use_safetensors=True, **NO_REMOTE_CODE)
    tower = AutoModel.from_config(vcfg)
    inner = getattr(tower, "vision_model", tower)  # transformers 5's vision models hold the modules themselves
    inner.load_state_dict(full.vision_model.state_dict())
    return tower


def _normalisation(path: str | None) -> tuple[Any, Any]:
    """The mean and std of the image processor saved with a tower folder (None, None when there is none)."""
    if path is None:
        return None, None
    from vlfuse.convert.processor import image_processor_dict  # here: vlfuse.convert imports this module

    data, _ = image_processor_dict(path)
    return (data.get("image_mean"), data.get("image_std")) if data else (None, None)
