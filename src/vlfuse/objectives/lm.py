"""Next-token cross-entropy on answer positions only (labels are -100 elsewhere).

Shapes: ``B`` batch, ``S`` sequence, ``W`` vocabulary size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (B, S, W)`` at position t against ``labels (B, S)`` at t+1."""
    shift_logits = logits[:, :-1].float()  # (B, S-1, W)
    shift_labels = labels[:, 1:]  # (B, S-1)
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=-100)
