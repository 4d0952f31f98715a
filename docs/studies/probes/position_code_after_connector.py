"""Probe: the vlfuse CLI with a fixed 2-D sine-cosine code added to every visual token after the
connector, at the tokens' own RMS scale (``POS_SCALE`` times it). Not a shipped option: it did not help.

    python docs/studies/probes/position_code_after_connector.py train \
        --config docs/studies/probes/warmup-with-position.yaml --out DIR

Findings: docs/studies/demo-recipe.md.
"""

import math
import os
import sys

import torch

from vlfuse.cli.app import main
from vlfuse.encoders.vit import sincos_2d
from vlfuse.model import VLM

SCALE = float(os.environ.get("POS_SCALE", "1.0"))
_encode = VLM.encode_images


def encode_images(self: VLM, pixel_values: torch.Tensor) -> torch.Tensor:
    v = _encode(self, pixel_values)  # (N_all, V, Dt)
    g = math.isqrt(v.shape[1])
    if g * g == v.shape[1]:  # a square grid of tokens
        rms = v.detach().pow(2).mean().sqrt().clamp(min=1e-3)
        v = v + SCALE * rms * sincos_2d(g, v.shape[2]).to(v)  # (V, Dt) broadcast over images
    return v


VLM.encode_images = encode_images
sys.exit(main(sys.argv[1:]))
