"""The dual encoder (late fusion): CLIP and SigLIP. Image and text are encoded apart, one vector each, and meet
only in their cosine similarity.

CLIP (Radford et al., 2021, arXiv:2103.00020): symmetric InfoNCE with a learned temperature. SigLIP (Zhai et al.,
2023, arXiv:2303.15343): a pairwise sigmoid loss with a learned temperature and bias. The image tower is any
encoder slot (``vit``, ``hf``, ...) plus ``ImageHead`` (pooling + projection); the text tower is any
``transformers`` text encoder (``TextTower``). ``from_transformers`` loads a saved ``CLIPModel`` / ``SiglipModel``
(``vlfuse.convert.dual_encoder``). Answers are chosen by ranking statements (``kinds/dual_eval.py``): the spatial
layout of an image is pooled away before image and text meet, which is what late fusion is said to lose.
Reference: ``transformers`` ``CLIPModel`` / ``SiglipModel``; open_clip ``CLIP``.
Shapes: ``N`` images, ``B`` texts, ``T`` text length, ``P`` features per image, ``Dv`` vision width, ``E`` embedding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlfuse.config import component
from vlfuse.data.text_pairs import DualProcessor
from vlfuse.data.tokenizer import TokenizerConfig, load_tokenizer
from vlfuse.data.transforms import ImageConfig, ImageTransform
from vlfuse.kinds.towers import ImageHead, ImageHeadConfig, TextTower, TextTowerConfig, text_hf_config
from vlfuse.objectives.contrastive import infonce_loss, sigmoid_loss
from vlfuse.registry import ENCODERS, MODELS


@dataclass(frozen=True)
class DualEncoderConfig:
    """Two towers and their shared space. ``loss`` picks CLIP's ``infonce`` or SigLIP's ``sigmoid`` (which adds the
    learned bias)."""

    encoder: Any = component("ENCODERS", "vit")
    head: ImageHeadConfig = field(default_factory=ImageHeadConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # the built-in BPE unless text.path has one
    image: ImageConfig = field(default_factory=ImageConfig)
    embed_dim: int = 64  # E, the shared space
    loss: Literal["infonce", "sigmoid"] = "infonce"
    logit_scale_init: float = math.log(1 / 0.07)  # CLIP: temperature 0.07; SigLIP: log 10
    logit_bias_init: float = -10.0  # SigLIP: starts near the prior of 1 positive in B
    logit_scale_max: float = math.log(100)  # CLIP clamps exp(logit_scale) to 100 while training
    kind: Literal["dual_encoder"] = "dual_encoder"

    def __post_init__(self) -> None:
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {self.embed_dim}")


@dataclass
class DualOutput:
    """``logits_per_image (N, B)`` = ``logits_per_text.t()``; embeddings L2-normalised; ``loss`` when asked."""

    loss: torch.Tensor | None
    logits_per_image: torch.Tensor
    logits_per_text: torch.Tensor
    image_embeds: torch.Tensor
    text_embeds: torch.Tensor


@MODELS.register("dual_encoder", DualEncoderConfig)
class DualEncoder(nn.Module):
    """Image tower (encoder slot + ``ImageHead``) and text tower (``TextTower``) with a learned temperature.

    Args:
        config: the ``DualEncoderConfig`` it was built from.
        encoder, head, text: built modules.
        tokenizer: the text tower's tokenizer.

    Example:
        >>> model = DualEncoder.from_config(DualEncoderConfig(), texts=["a red circle ."])
        >>> batch = model.processor()(text=["a red circle ."], images=[image])
        >>> model(**batch).logits_per_image.shape
        torch.Size([1, 1])
    """

    components = ("encoder", "head", "text")  # parameter groups a stage's policy sets; the temperature always trains

    def __init__(self, config: DualEncoderConfig, encoder: nn.Module, head: ImageHead, text: TextTower,
                 tokenizer: Any) -> None:
        super().__init__()
        self.config, self.encoder, self.head, self.text, self.tokenizer = config, encoder, head, text, tokenizer
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias_init))) if config.loss == "sigmoid" \
            else None

    @classmethod
    def from_config(cls, config: DualEncoderConfig, tokenizer: Any = None,
                    texts: list[str] | None = None) -> DualEncoder:
        """Build both towers; the tokenizer is ``tokenizer``, else ``text.path``'s or ``tokenizer.path``'s, else the
        built-in BPE trained on ``texts``."""
        if tokenizer is None:
            if config.text.path is not None and config.tokenizer.path is None:
                from transformers import AutoTokenizer

                from vlfuse.hub import NO_REMOTE_CODE

                tokenizer = AutoTokenizer.from_pretrained(config.text.path, **NO_REMOTE_CODE)
            else:
                tokenizer = load_tokenizer(config.tokenizer, texts or [])
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        encoder = ENCODERS.build(config.encoder)
        special = {k: getattr(tokenizer, k) for k in ("eos_token_id", "bos_token_id", "pad_token_id")
                   if getattr(tokenizer, k) is not None}
        hf_text = text_hf_config(config.text, None if config.text.path else len(tokenizer), special)
        head = ImageHead(config.head, encoder.embed_dim, config.embed_dim)
        return cls(config, encoder, head, TextTower(config.text, hf_text, config.embed_dim), tokenizer)

    # --- the user path -----------------------------------------------------------------------------------------
    def processor(self) -> DualProcessor:
        """Images resized and normalised as the encoder expects; text padded as the text tower was trained."""
        enc = self.encoder
        transform = ImageTransform(enc.image_size, enc.image_mean, enc.image_std, enc.in_channels,
                                   self.config.image.resize)
        eos = self.tokenizer.eos_token_id if self.config.text.pool == "eos" else None  # texts end with EOS
        return DualProcessor(self.tokenizer, transform, self.text.max_length, self.config.text.padding, eos)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, E)``, L2-normalised."""
        weight = next(self.encoder.parameters(), None)
        if weight is not None:
            pixel_values = pixel_values.to(weight.dtype)
        return F.normalize(self.head(self.encoder(pixel_values)), dim=-1)  # (N, P, Dv) -> (N, E)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, T) -> (B, E)``, L2-normalised."""
        return F.normalize(self.text(input_ids, attention_mask), dim=-1)

    def scale(self) -> torch.Tensor:
        """``logit_scale``, clamped to ``logit_scale_max`` in the graph (CLIP's clamp, without an in-place update)."""
        return self.logit_scale.clamp(max=self.config.logit_scale_max)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                return_loss: bool = False, text_group: torch.Tensor | None = None) -> DualOutput:
        """``pixel_values (N, C, H, W)``, ``input_ids / attention_mask (B, T)`` -> ``DualOutput``.

        ``return_loss`` (N == B, pair ``i`` matches): the config's loss; ``text_group (B,)`` marks equal captions.
        """
        image, text = self.encode_images(pixel_values), self.encode_texts(input_ids, attention_mask)  # (N|B, E)
        logits_per_text = self.scale().exp() * text @ image.t()  # (B, N)
        if self.logit_bias is not None:
            logits_per_text = logits_per_text + self.logit_bias
        loss = self.loss(image, text, text_group) if return_loss else None
        return DualOutput(loss, logits_per_text.t(), logits_per_text, image, text)

    def loss(self, image: torch.Tensor, text: torch.Tensor, text_group: torch.Tensor | None = None,
             group: Any = None) -> torch.Tensor:
        """The config's loss of normalised ``image``, ``text (B, E)``; ``group``: a process group to gather over."""
        if image.shape[0] != text.shape[0] or image.shape[0] < 2:
            raise ValueError(f"a contrastive loss needs B >= 2 matching pairs, got {image.shape[0]} images and "
                             f"{text.shape[0]} texts; use batch_size >= 2")
        same = None if text_group is None else text_group[:, None] == text_group[None, :]  # (B, B)
        if self.logit_bias is None:
            return infonce_loss(image, text, self.scale(), same, group)
        return sigmoid_loss(image, text, self.scale(), self.logit_bias, same, group)

    # --- the model-kind protocol (kinds/base.py) ---------------------------------------------------------------
    def objective(self, name: str) -> Any:
        """``contrastive``: image-caption pairs and the config's loss (``infonce`` or ``sigmoid``)."""
        from vlfuse.objectives.stage import Objective

        if name != "contrastive":
            raise ValueError(f"a dual_encoder trains objective 'contrastive' (on image-caption pairs), not {name!r}; "
                             "set the stage's objective: contrastive")
        return Objective(lambda m: m.processor(), _contrastive_terms)

    def answer(self, records: Sequence[dict[str, Any]], candidates: dict[str, list[str]]) -> list[str]:
        """The best-scoring candidate statement per question record (``kinds/dual_eval.py``)."""
        from vlfuse.kinds.dual_eval import rank_answers

        return rank_answers(self, records, candidates)

    def retrieval_scores(self, records: Sequence[dict[str, Any]], batch_size: int,
                         rerank: int = 0) -> dict[str, torch.Tensor]:
        """Cosine similarities of every image with every caption of ``records``."""
        from vlfuse.kinds.dual_eval import pair_scores

        return pair_scores(self, records, batch_size, rerank)

    def costs(self, image_counts: Sequence[int], repeats: int) -> dict[str, Any]:
        """Parameters and the time to embed ``n`` images and one text (nothing is decoded, nothing cached)."""
        from vlfuse.kinds.dual_eval import dual_costs

        return dual_costs(self, image_counts, repeats)

    # --- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str) -> None:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer files (atomically)."""
        from vlfuse.kinds.dual_eval import save_dual

        save_dual(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str, dtype: torch.dtype | str | None = None,
                        device: str | torch.device = "cpu") -> DualEncoder:
        """Load a model written by ``save_pretrained`` (safetensors, strict; nothing runs from the folder)."""
        from vlfuse.kinds.dual_eval import load_dual

        return load_dual(cls, directory, dtype, device)

    @classmethod
    def from_transformers(cls, directory: str, device: str | torch.device = "cpu") -> DualEncoder:
        """Load a saved ``transformers`` ``CLIPModel`` or ``SiglipModel`` (and its tokenizer, processor) from a local
        folder: safetensors only, no code from the folder.

        Example:
            >>> model = DualEncoder.from_transformers("checkpoints/clip-vit-base-patch32")
        """
        from vlfuse.convert.dual_encoder import dual_from_transformers

        return dual_from_transformers(directory, device)


def _contrastive_terms(model: DualEncoder, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], return_loss=True,
                text_group=batch.get("text_group"))
    return {model.config.loss: out.loss}
