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


def label_positions(labels: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` bool: the positions t whose next label ``labels[:, t+1]`` is scored (the last never is)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)  # (B, S)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def kept_lm_loss(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``lm_loss`` from ``logits (N, W)`` computed only at ``keep (B, S)``'s true positions, in row-major order."""
    targets = labels[:, 1:][keep[:, :-1]]  # (N,), the same order as hidden_states[keep]
    return F.cross_entropy(logits.float(), targets)
