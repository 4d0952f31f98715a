"""What a training stage optimises (``StageConfig.objective``): its batches and its loss.

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
    loss: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]  # (model, batch) -> scalar


def _lm_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def objective(name: str) -> Objective:
    """The objective called ``name``; an unknown name lists the choices."""
    from vlfuse.objectives.blip2 import blip2_loss, pair_processor

    table = {"lm": Objective(lambda m: m.processor(), _lm_loss), "blip2": Objective(pair_processor, blip2_loss)}
    if name not in table:
        raise ValueError(f"unknown objective {name!r}; choices are: {', '.join(table)}")
    return table[name]
