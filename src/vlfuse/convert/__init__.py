"""Load saved ``transformers`` VLM checkpoints into the equivalent vlfuse model (``VLM.from_transformers``).

One file per family registers a converter for its ``model_type`` in ``CONVERTERS`` (``llava``, ``blip-2``,
``instructblip``, ``idefics``, ``mllama``; ``idefics2`` holds the Idefics2 / Idefics3 connector loaders). A
converter builds the ``VLMConfig`` from the HF config and maps the weights' keys; ``from_transformers`` adds the
saved image processor's settings (``convert/processor.py``), builds the model with its parameters on ``meta`` and
assigns the weights (safetensors, never unpickled, strict), in the checkpoint's dtype unless told otherwise.
Nothing in the folder runs (``vlfuse.hub``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from vlfuse.convert import blip2, idefics, instructblip, llava, mllama  # noqa: F401  (each registers its converter)
from vlfuse.convert.common import CONVERTERS, Converted, converter
from vlfuse.convert.processor import ImageSettings, read_image_settings
from vlfuse.hub import NO_REMOTE_CODE, check_folder
from vlfuse.loading import build_empty, dtype_name, load_weights, resolve_dtype

__all__ = ["CONVERTERS", "Converted", "converter", "from_transformers", "read_image_settings"]


def _with_image_settings(config: Any, settings: ImageSettings, image_size: int | None) -> Any:
    """``config`` with the processor's normalisation on the encoder and its aspect-ratio mode in ``image``."""
    if settings.size is not None and image_size is not None and settings.size != image_size:
        raise ValueError(f"the saved image processor outputs {settings.size} px images but the vision tower takes "
                         f"{image_size} px; save the processor that belongs to this model")
    changes: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(config.encoder)}
    if settings.mean is not None and {"image_mean", "image_std"} <= fields:
        changes["encoder"] = dataclasses.replace(config.encoder, image_mean=settings.mean, image_std=settings.std)
    if settings.image is not None:
        changes["image"] = settings.image
    return dataclasses.replace(config, **changes)


def from_transformers(directory: str | Path, dtype: torch.dtype | str = "auto",
                      device: str | torch.device = "cpu") -> Any:
    """The vlfuse ``VLM`` equal to the ``transformers`` model saved in ``directory``.

    Args:
        directory: a folder written by ``save_pretrained`` (config, safetensors weights, tokenizer, processor).
        dtype: ``"auto"`` (the dtype saved in config.json, float32 when none), a ``torch.dtype`` or its name.
        device: where the weights are loaded.
    """
    directory = check_folder(directory, "transformers model folder", weights=True)
    if not (directory / "config.json").is_file():
        raise ValueError(f"{str(directory)!r} has no config.json; give the folder a transformers model was saved to")
    raw = json.loads((directory / "config.json").read_text())
    hf = AutoConfig.from_pretrained(str(directory), **NO_REMOTE_CODE)
    if hf.model_type not in CONVERTERS:
        raise ValueError(f"no converter for transformers model_type {hf.model_type!r}; choices: {sorted(CONVERTERS)}")
    target = resolve_dtype(dtype, raw.get("dtype") or raw.get("torch_dtype"))
    assert target is not None  # "auto" always resolves
    out = CONVERTERS[hf.model_type](directory, hf)
    config = _with_image_settings(out.config, read_image_settings(directory),
                                  getattr(getattr(hf, "vision_config", None), "image_size", None))
    config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, dtype=dtype_name(target)))
    from vlfuse.model import VLM

    model = build_empty(lambda: VLM.from_config(config, tokenizer=out.tokenizer,
                                                qformer_tokenizer=out.qformer_tokenizer), target)
    return load_weights(model, out.state, dtype=target, device=device)
