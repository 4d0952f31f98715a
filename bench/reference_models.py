"""Random-weight ``transformers`` Mllama and IDEFICS models of a chosen size, and the same networks in vlfuse.

``reference_xattn.py`` times ``transformers``' own ``generate`` of these models against vlfuse's generation loop on
the very same weights: each HF model is built from a config (HF's own initialisation, cross-attention gates then
opened so the images matter), saved with a word-level tokenizer to a folder, and loaded back with
``VLM.from_transformers`` (the converters in ``vlfuse.convert_xattn``).

Sizes (``Size``): the text model's self-attention layers, width, heads, FFW width and vocabulary; Mllama gets one
cross-attention layer after every ``cross_every`` self-attention layers (Llama 3.2 11B: 4, at indices 3, 8, 13, ...),
IDEFICS a gated block before every ``cross_every``-th layer (IDEFICS-9B: 4). ``vision="real"`` keeps the visual
token counts of the released models (Mllama: 560 px, patch 14, 1601 tokens per tile; IDEFICS: 224 px, patch 14,
then its perceiver's 64 latents, depth 6) with a 2-layer tower (the tower only runs in the prefill, which the
decode timing subtracts); ``vision="tiny"``: 8 px images, the parity tests' sizes.
Shapes: ``N`` images, ``T`` prompt length, ``C H W`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    IdeficsConfig,
    IdeficsForVisionText2Text,
    MllamaConfig,
    MllamaForConditionalGeneration,
    PreTrainedModel,
)
from transformers.models.idefics.processing_idefics import (
    image_attention_mask_for_packed_input_ids,
    incremental_to_binary_attention_mask,
)
from transformers.models.mllama.processing_mllama import (
    convert_sparse_cross_attention_mask_to_dense,
    get_cross_attention_token_mask,
)

from vlfuse import VLM
from vlfuse.data.tokenizer import build_tokenizer

WORDS = ["what", "color", "is", "the", "circle", "square", "?", "red", "blue", "left", "of", "and", "a", "yes", "no"]
QUESTION = "what color is the circle ?".split()
FAMILIES = ("mllama", "idefics")


@dataclass(frozen=True)
class Size:
    """The text model (shared by both families) and which vision towers."""

    hidden: int
    layers: int  # self-attention layers
    heads: int
    kv_heads: int  # Mllama only: IDEFICS' Llama has no grouped-query attention (kv heads = heads)
    intermediate: int
    vocab: int
    cross_every: int  # a cross-attention layer per this many self-attention layers
    vision: str  # "tiny" | "real"
    positions: int = 2048

    def __post_init__(self) -> None:
        if self.layers % self.cross_every:
            raise ValueError(f"layers={self.layers} must be a multiple of cross_every={self.cross_every}")
        if self.vision not in ("tiny", "real"):
            raise ValueError(f"vision={self.vision!r} must be 'tiny' or 'real'")


PRESETS = {
    "tiny": Size(hidden=32, layers=4, heads=4, kv_heads=2, intermediate=64, vocab=512, cross_every=2, vision="tiny",
                 positions=256),
    # Llama-3.2-1B's text dims (its embeddings untied, as Mllama's are)
    "1b": Size(hidden=2048, layers=16, heads=32, kv_heads=8, intermediate=8192, vocab=128256, cross_every=4,
               vision="real"),
}

MLLAMA_VISION = {
    "tiny": {"hidden_size": 32, "image_size": 8, "patch_size": 2, "num_hidden_layers": 2, "num_global_layers": 1,
             "attention_heads": 2, "intermediate_size": 64, "vision_output_dim": 64},
    "real": {"hidden_size": 1280, "image_size": 560, "patch_size": 14, "num_hidden_layers": 2, "num_global_layers": 1,
             "attention_heads": 16, "intermediate_size": 5120, "vision_output_dim": 2560},
}
IDEFICS_VISION = {
    "tiny": ({"embed_dim": 24, "image_size": 8, "patch_size": 2, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 48},
             {"resampler_n_latents": 4, "resampler_depth": 1, "resampler_n_heads": 2, "resampler_head_dim": 8}),
    "real": ({"embed_dim": 1280, "image_size": 224, "patch_size": 14, "num_hidden_layers": 2,
              "num_attention_heads": 16, "intermediate_size": 5120},
             {"resampler_n_latents": 64, "resampler_depth": 6, "resampler_n_heads": 16, "resampler_head_dim": 96}),
}


def mllama_cross_layers(size: Size) -> list[int]:
    """Indices of Mllama's cross-attention layers in its one list: after every ``cross_every`` self layers."""
    return [size.cross_every - 1 + k * (size.cross_every + 1) for k in range(size.layers // size.cross_every)]


def _special_ids(tok: Any) -> dict[str, int]:
    return {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}


def build_mllama(size: Size, tok: Any) -> MllamaForConditionalGeneration:
    """A random ``MllamaForConditionalGeneration`` (one tile per image), gates opened."""
    cross = mllama_cross_layers(size)
    text = {"vocab_size": size.vocab, "hidden_size": size.hidden, "num_hidden_layers": size.layers + len(cross),
            "num_attention_heads": size.heads, "num_key_value_heads": size.kv_heads,
            "intermediate_size": size.intermediate, "cross_attention_layers": cross,
            "max_position_embeddings": size.positions, **_special_ids(tok)}
    vision = {**MLLAMA_VISION[size.vision], "intermediate_layers_indices": [0], "max_num_tiles": 1,
              "supported_aspect_ratios": [[1, 1]]}
    image_id = tok.convert_tokens_to_ids("<image>")
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=image_id)
    torch.manual_seed(0)
    return open_gates(MllamaForConditionalGeneration(config).eval())


def build_idefics(size: Size, tok: Any) -> IdeficsForVisionText2Text:
    """A random ``IdeficsForVisionText2Text`` (perceiver on, float gates, 2 additional tokens), gates opened."""
    vision, perceiver = IDEFICS_VISION[size.vision]
    config = IdeficsConfig(vocab_size=size.vocab, additional_vocab_size=2, hidden_size=size.hidden,
                           intermediate_size=size.intermediate, num_hidden_layers=size.layers,
                           num_attention_heads=size.heads, cross_layer_interval=size.cross_every, use_resampler=True,
                           qk_layer_norms=False, alpha_type="float", vision_config=vision,
                           perceiver_config={"use_resampler": True, **perceiver},
                           max_position_embeddings=size.positions, freeze_text_layers=False,
                           freeze_vision_layers=False, **_special_ids(tok))
    torch.manual_seed(0)
    return open_gates(IdeficsForVisionText2Text(config).eval())


def open_gates(model: PreTrainedModel) -> PreTrainedModel:
    """tanh(0) = 0 at HF's init: set every cross-attention gate to 0.7 (attention) / 0.6 (FFW), in place."""
    with torch.no_grad():
        if isinstance(model, IdeficsForVisionText2Text):
            for layer in model.model.gated_cross_attn_layers:
                layer.alpha_cross_attn.fill_(0.7)
                layer.alpha_dense.fill_(0.6)
        else:
            for i in model.config.text_config.cross_attention_layers:
                layer = model.model.language_model.layers[i]
                layer.cross_attn_attn_gate.fill_(0.7)
                layer.cross_attn_mlp_gate.fill_(0.6)
    return model


def build_hf(family: str, size: Size) -> tuple[PreTrainedModel, Any]:
    """``(random HF model of `family`, its word-level tokenizer)``."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}; choose one of {', '.join(FAMILIES)}")
    tok = build_tokenizer(WORDS)
    return (build_mllama if family == "mllama" else build_idefics)(size, tok), tok


def convert(hf: PreTrainedModel, tok: Any, folder: Path, dtype: torch.dtype,
            device: str) -> tuple[PreTrainedModel, VLM]:
    """``(HF model, the same network as a vlfuse VLM)``, both on ``device`` in ``dtype``.

    The HF model is saved in ``dtype`` to ``folder`` and loaded from there, so both hold the same (rounded) weights.
    """
    hf = hf.to(dtype)
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    ours = VLM.from_transformers(str(folder)).to(device=device, dtype=dtype).eval()
    hf.generation_config.eos_token_id = None  # never stop early: both decode exactly the asked-for tokens
    return hf.to(device), ours


def build_pair(family: str, size: Size, folder: Path, dtype: torch.dtype,
               device: str) -> tuple[PreTrainedModel, VLM, Any]:
    """``(HF model, the same network in vlfuse, tokenizer)``: ``build_hf`` then ``convert``."""
    hf, tok = build_hf(family, size)
    hf, ours = convert(hf, tok, folder, dtype, device)
    return hf, ours, tok


def prompt_ids(tok: Any, n_images: int) -> torch.Tensor:
    """``(1, T)``: BOS, then ``<image> word`` per image (each image its own group), then the question."""
    words = [w for i in range(n_images) for w in ("<image>", WORDS[7 + i % 8])] + QUESTION
    return torch.tensor([[tok.bos_token_id, *tok.convert_tokens_to_ids(words)]])


def pixels(model: VLM, n_images: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``(N, C, H, W)`` random images at the vision tower's size (seeded by ``N``)."""
    enc = model.encoder
    g = torch.Generator().manual_seed(n_images)
    return torch.randn(n_images, enc.in_channels, enc.image_size, enc.image_size, generator=g).to(device, dtype)


def hf_inputs(family: str, tok: Any, ids: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """What ``transformers``' ``generate`` takes for this prompt: ``ids (1, T)``, ``images (N, C, H, W)``."""
    n, device = images.shape[0], images.device
    mask = torch.ones_like(ids)
    if family == "idefics":
        incremental, _ = image_attention_mask_for_packed_input_ids(ids, tok, "pt")
        image_mask = incremental_to_binary_attention_mask(incremental, "pt", num_classes=n)  # (1, T, N)
        out = {"input_ids": ids, "attention_mask": mask, "pixel_values": images[None],  # (1, N, C, H, W)
               "image_attention_mask": image_mask}
    else:
        sparse = [get_cross_attention_token_mask(ids[0].tolist(), tok.convert_tokens_to_ids("<image>"))]
        dense = convert_sparse_cross_attention_mask_to_dense(sparse, [[1] * n], 1, ids.shape[1])  # (1, T, N, 1)
        out = {"input_ids": ids, "attention_mask": mask, "pixel_values": images[None, :, None],  # (1, N, 1, C, H, W)
               "aspect_ratio_ids": torch.ones(1, n, dtype=torch.long),
               "aspect_ratio_mask": torch.ones(1, n, 1, dtype=torch.long),
               "cross_attention_mask": torch.from_numpy(dense)}
    return {k: v.to(device) for k, v in out.items()}


def vlfuse_batch(ids: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same prompt as ``vlfuse.generate.generate_ids`` takes it."""
    device = images.device
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "pixel_values": images,
            "image_counts": torch.tensor([images.shape[0]], device=device)}
