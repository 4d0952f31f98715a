"""Model kinds (``MODELS``): the decoder ``VLM`` and the ``dual_encoder``; see ``kinds/base.py`` for the protocol.

``build_model`` and ``load_model`` pick the class from the config's (or the saved folder's) ``kind``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vlfuse.kinds import dual_encoder  # noqa: F401  (registers "dual_encoder")
from vlfuse.registry import MODELS


def _fill() -> None:
    import vlfuse.model  # noqa: F401  (registers "vlm")


def build_model(config: Any, tokenizer: Any = None, texts: list[str] | None = None) -> Any:
    """The model of ``config`` (any registered kind), freshly initialised."""
    _fill()
    return MODELS.get(config.kind).cls.from_config(config, tokenizer=tokenizer, texts=texts)


def load_model(directory: str | Path, dtype: torch.dtype | str | None = None,
               device: str | torch.device = "cpu") -> Any:
    """A model saved by ``save_pretrained``, of whichever kind its ``config.json`` names (none: ``vlm``)."""
    from vlfuse.train.checkpoint import read_meta

    _fill()
    kind = read_meta(directory)["model"].get("kind", "vlm")
    return MODELS.get(kind).cls.from_pretrained(str(directory), dtype=dtype, device=device)


def model_names() -> list[str]:
    """Registered model kinds."""
    _fill()
    return MODELS.names()
