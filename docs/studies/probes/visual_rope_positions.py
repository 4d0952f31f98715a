"""Probe: the vlfuse CLI with the LLM position of every visual token after an image's first one
advancing by ``POS_STEP`` (default 0: an image's tokens share one RoPE position) instead of 1. Text positions
still advance by 1. Tests whether RoPE's distance terms blur which visual token a question looks up.

    POS_STEP=0 python docs/studies/probes/visual_rope_positions.py train \
        --config docs/studies/probes/llm-init-base.yaml --set train.threads=1 --out DIR

Findings: docs/studies/llm-init-and-spatial-attention.md.
"""

import os
import sys

import torch

from vlfuse.cli.app import main
from vlfuse.model import VLM

STEP = float(os.environ.get("POS_STEP", "0"))
_forward = VLM.forward


def positions(self: VLM, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, S) float positions: +1 per real text token and per image's first token, +STEP per later image token."""
    img = input_ids == self.injector.image_token_id  # (B, S)
    later = img & torch.cat([img.new_zeros(img.shape[0], 1), img[:, :-1]], dim=1)  # image token after an image token
    inc = mask.float() * torch.where(later, STEP, 1.0)  # (B, S)
    return (inc.cumsum(-1) - 1).clamp(min=0)  # (B, S)


def forward(self: VLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
    past = kwargs.get("past_key_values")
    if attention_mask is not None and past is None and kwargs.get("position_ids") is None:
        pos = positions(self, input_ids, attention_mask)
        kwargs["position_ids"] = pos
        self._shift = attention_mask.long().sum(-1, keepdim=True) - (pos[:, -1:] + 1)  # (B, 1) what decode must drop
    elif past is not None and kwargs.get("position_ids") is not None:
        kwargs["position_ids"] = kwargs["position_ids"] - self._shift
    return _forward(self, input_ids, attention_mask, *args, **kwargs)


VLM.forward = forward
sys.exit(main(sys.argv[1:]))
