"""Load a saved ``transformers`` ``CLIPModel`` or ``SiglipModel`` into vlfuse's ``DualEncoder``.

The vision tower becomes the ``hf`` encoder slot (all hidden states of the last layer, CLS kept) and its
``post_layernorm`` (+ SigLIP's attention-pooling head, CLIP's ``visual_projection``) the ``ImageHead``; the text
model becomes the ``TextTower`` with CLIP's end-of-text pooling or SigLIP's last-position pooling, its projection
(CLIP ``text_projection``, SigLIP ``text_model.head``) the tower's ``proj``. The towers keep their own weights
whole, so each also loads alone; their unused pooled heads ride along. Safetensors only; nothing from the folder
runs (``vlfuse.hub``). ``preprocessor_config.json`` gives the normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from vlfuse.convert.common import tokenizer as folder_tokenizer
from vlfuse.convert.processor import read_image_settings
from vlfuse.hub import NO_REMOTE_CODE, check_folder
from vlfuse.loading import build_empty, load_weights, read_safetensors

# per model_type: image head, text pooling and padding, the loss, and where the projections live
FAMILIES: dict[str, dict[str, Any]] = {
    "clip": {"head": {"pool": "cls", "norm": True, "projection": True}, "pool": "eos", "padding": "longest",
             "bias": False, "loss": "infonce", "vision_proj": "visual_projection.", "text_proj": "text_projection."},
    "siglip": {"head": {"pool": "attention", "norm": True, "projection": False}, "pool": "last",
               "padding": "max_length", "bias": True, "loss": "sigmoid", "vision_proj": None,
               "text_proj": "text_model.head."},
}


def _config(directory: Path, hf: Any) -> Any:
    from vlfuse.config import from_dict
    from vlfuse.kinds.dual_encoder import DualEncoderConfig

    fam, v, t = FAMILIES[hf.model_type], hf.vision_config, hf.text_config
    settings = read_image_settings(directory)
    encoder = {"kind": "hf", "config": v.to_dict(), "feature_layer": -1, "select": "full"}
    if settings.mean is not None:
        encoder.update(image_mean=list(settings.mean), image_std=list(settings.std))
    head = {**fam["head"], "heads": v.num_attention_heads, "intermediate_size": v.intermediate_size,
            "layer_norm_eps": v.layer_norm_eps}
    embed = getattr(hf, "projection_dim", None) or v.hidden_size
    data = {"kind": "dual_encoder", "encoder": encoder, "head": head, "embed_dim": embed, "loss": fam["loss"],
            "text": {"config": t.to_dict(), "pool": fam["pool"], "projection_bias": fam["bias"],
                     "padding": fam["padding"]},
            "logit_scale_max": 1e4}  # a loaded model's scale is used as saved (transformers does not clamp)
    if settings.image is not None:
        data["image"] = settings.image
    config = from_dict(DualEncoderConfig, data)
    return config


def _state(state: dict[str, torch.Tensor], fam: dict[str, Any], keys: set[str]) -> dict[str, torch.Tensor]:
    """HF keys -> vlfuse keys (``keys``: the model's); a tower keeps its own keys, with or without the
    ``vision_model.`` / ``text_model.`` level that its class has alone."""
    vis = "encoder.tower." if any(k.startswith("encoder.tower.vision_model.") for k in keys) else None
    txt = "text.tower." if any(k.startswith("text.tower.text_model.") for k in keys) else None
    out = {}
    for key, value in state.items():
        if key.startswith("vision_model."):
            out[vis + key if vis else "encoder.tower." + key[len("vision_model."):]] = value
            if key.startswith("vision_model.post_layernorm."):
                out[f"head.norm.{key[len('vision_model.post_layernorm.'):]}"] = value.clone()  # its own tensor
            if key.startswith("vision_model.head."):
                out[f"head.pool.{key[len('vision_model.head.'):]}"] = value.clone()
        elif key.startswith("text_model."):
            out[txt + key if txt else "text.tower." + key[len("text_model."):]] = value
        elif key in ("logit_scale", "logit_bias"):
            out[key] = value.reshape(())
        elif not (fam["vision_proj"] and key.startswith(fam["vision_proj"])) and not key.startswith(fam["text_proj"]):
            raise ValueError(f"unexpected weight {key!r} in the transformers checkpoint; no vlfuse part takes it")
        if fam["vision_proj"] and key.startswith(fam["vision_proj"]):
            out[f"head.proj.{key[len(fam['vision_proj']):]}"] = value
        if key.startswith(fam["text_proj"]):
            out[f"text.proj.{key[len(fam['text_proj']):]}"] = value.clone()
    return out


def dual_from_transformers(directory: str | Path, device: str | torch.device = "cpu") -> Any:
    """The ``DualEncoder`` equal to the ``CLIPModel`` / ``SiglipModel`` saved in ``directory`` (fp32)."""
    from vlfuse.kinds.dual_encoder import DualEncoder

    folder = check_folder(directory, "transformers model folder", weights=True)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{str(folder)!r} has no config.json; give the folder a transformers model was saved to")
    hf = AutoConfig.from_pretrained(str(folder), **NO_REMOTE_CODE)
    if hf.model_type not in FAMILIES:
        raise ValueError(f"DualEncoder.from_transformers loads {', '.join(FAMILIES)} models, not model_type "
                         f"{hf.model_type!r}; for a generative VLM use VLM.from_transformers")
    config = _config(folder, hf)
    tok, _ = folder_tokenizer(folder, 0)
    model = build_empty(lambda: DualEncoder.from_config(config, tokenizer=tok), torch.float32)
    state = _state(read_safetensors(folder), FAMILIES[hf.model_type], set(model.state_dict()))
    if "logit_scale" in state and not math.isfinite(float(state["logit_scale"])):
        raise ValueError("the checkpoint's logit_scale is not finite")
    return load_weights(model, state, dtype=torch.float32, device=device)
