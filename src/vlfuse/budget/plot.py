"""``vlfuse cost --plot``: prefill FLOPs, decode FLOPs per token and KV cache against the number of images.

One line per design, x = images in the prompt (0 .. max(N, 8)); matplotlib with the Agg backend, PNG out.
Units: TFLOPs, GFLOPs per generated token (the first), MiB of KV cache after ``G`` new tokens.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from vlfuse.budget.cost import Workload, estimate_cost
from vlfuse.budget.dims import FusionDims, LLMDims, VisionDims


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cost(path: str | Path, designs: list[str], m: LLMDims, v: VisionDims, f: FusionDims, w: Workload) -> Path:
    """Draw the three panels for ``designs`` and save them to ``path`` (PNG); returns the path."""
    plt = _pyplot()
    xs = list(range(max(w.images, 8) + 1))
    rows = [estimate_cost(designs, m, v, f, replace(w, images=n)) for n in xs]  # rows[n][design]
    panels = [("prefill (TFLOPs)", lambda c: c.prefill_flops / 1e12),
              ("decode, first token (GFLOPs)", lambda c: c.decode_flops_first / 1e9),
              (f"KV cache after {w.new_tokens} tokens (MiB)", lambda c: c.kv_cache_bytes / 2**20)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (label, value) in zip(axes, panels):
        for i, name in enumerate(designs):
            ax.plot(xs, [value(r[i]) for r in rows], marker="o", ms=3, label=name)
        ax.set_xlabel("images in the prompt")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{w.text_tokens} text tokens, {w.new_tokens} new tokens, KV in {w.dtype}; vision encoder apart")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
