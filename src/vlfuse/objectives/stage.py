"""What a training stage optimises (``StageConfig.objective``): its batches and its loss terms (summed for the
step; ``metrics.jsonl`` records each term when there are several).

``lm``: the chat-formatted samples and the next-token loss on answers (every design).
``blip2``: BLIP-2 stage 1, image-caption pairs and ITC + ITM + ITG (a ``qformer`` connector with a text path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Objective:
    processor: Callable[[Any], Any]  # model -> a processor with encode(record) and collate(examples)
    loss: Callable[[Any, dict[str, torch.Tensor]], dict[str, torch.Tensor]]  # (model, batch) -> named scalar terms


def _lm_loss(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"lm": model(**batch, label_logits_only=True).loss}  # the head runs only where a label is scored


def objective(name: str) -> Objective:
    """The objective called ``name``; an unknown name lists the choices."""
    from vlfuse.objectives.blip2 import blip2_losses, pair_processor

    table = {"lm": Objective(lambda m: m.processor(), _lm_loss), "blip2": Objective(pair_processor, blip2_losses)}
    if name not in table:
        raise ValueError(f"unknown objective {name!r}; choices are: {', '.join(table)}")
    return table[name]
