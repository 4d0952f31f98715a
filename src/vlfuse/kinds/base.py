"""The model-kind protocol: what training, evaluation and ``vlfuse compare`` ask of every kind of model.

vlfuse has several kinds of model, each registered in ``MODELS`` (``vlfuse.registry``) from its own file: the
decoder ``VLM`` (``vlfuse/model.py``: encoder -> connector -> injection -> LLM, answers by generating) and the
``dual_encoder`` (``kinds/dual_encoder.py``: CLIP / SigLIP, two towers compared at the output, answers by ranking
statements). Fusion encoders (LXMERT / ViLBERT two streams) and native VQ models fit the same protocol: each
trains through ``objective(name)``, answers through ``answer`` (generating, or ranking the candidates) and
scores image-text pairs through ``retrieval_scores`` where it can (a kind that cannot raises with the reason).
The loop (``train/loop.py``), the evaluation (``evaluate.py``, ``evaluate_retrieval.py``) and the comparison
(``compare/cell.py``) call only these, never ``if kind == ...``.
Shapes: ``N`` images / pairs, ``C H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class ModelKind(Protocol):
    """What every registered model kind implements (``MODELS.register(name, ConfigClass)`` on the class).

    Attributes:
        config: the frozen config dataclass it was built from (its ``kind`` names the registry entry).
        components: the parameter groups a stage's ``policy`` may set to ``train | freeze | lora``; each is a
            sub-module of that name (``VLM``: encoder, connector, injector, llm).
        tokenizer: the tokenizer saved with the model.

    Example:
        >>> model = build_model(DualEncoderConfig(), texts=["a red circle ."])
        >>> goal = model.objective("contrastive")
        >>> terms = goal.loss(model, next(batches(goal.processor(model))))
    """

    config: Any
    components: tuple[str, ...]
    tokenizer: Any

    @classmethod
    def from_config(cls, config: Any, tokenizer: Any = None, texts: list[str] | None = None) -> ModelKind:
        """Build from ``config``; the built-in tokenizer trains on ``texts`` unless one is given or saved."""

    @classmethod
    def from_pretrained(cls, directory: str, dtype: torch.dtype | str | None = None,
                        device: str | torch.device = "cpu") -> ModelKind:
        """Load what ``save_pretrained`` wrote (safetensors; never unpickles, never runs code from the folder)."""

    def save_pretrained(self, directory: str) -> None:
        """Write ``config.json`` (``{"format": "vlfuse", "model": {..., "kind": ...}}``), weights, tokenizer."""

    def processor(self) -> Any:
        """The user-facing processor: raw text and images -> the batch ``forward`` reads."""

    def objective(self, name: str) -> Any:
        """The training objective ``name`` (``vlfuse.objectives.stage.Objective``: batches + named loss terms);
        an objective this kind cannot train raises, listing the ones it can."""

    def answer(self, records: Sequence[dict[str, Any]], candidates: dict[str, list[str]]) -> list[str]:
        """One answer per LLaVA-format question record. ``candidates`` (skill -> answer vocabulary, from the data)
        is what a ranking model chooses from; a generative model may ignore it."""

    def retrieval_scores(self, records: Sequence[dict[str, Any]], batch_size: int,
                         rerank: int = 0) -> dict[str, torch.Tensor]:
        """``{"i2t": (N, N) row = image, "t2i": (N, N) row = text}`` scores of image-caption ``records``."""

    def costs(self, image_counts: Sequence[int], repeats: int) -> dict[str, Any]:
        """What ``vlfuse compare`` reports beside accuracy: ``visual_tokens``, ``params_added``, ``params_total``
        and, per ``n`` in ``image_counts``, ``prefill_ms_{n}img``, ``decode_ms_per_token_{n}img``,
        ``kv_bytes_{n}img``, ``kv_visual_bytes_{n}img``."""
