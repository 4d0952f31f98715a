"""The two plots of a comparison (matplotlib, Agg backend, PNG).

``accuracy_vs_tokens.png``: mean accuracy over skills (error bar: std over seeds) against visual tokens per
image, one labelled point per design. ``decode_vs_images.png``: decode ms per token against images in the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlfuse.compare.report import mean_std


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_tokens(results: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, d in results["designs"].items():
        per_seed = [sum(c["accuracy"].values()) / max(len(c["accuracy"]), 1) for c in d["seeds"].values()]
        ms = mean_std(per_seed)
        ax.errorbar(d["visual_tokens"], 100 * ms["mean"], yerr=100 * ms["std"], fmt="o", capsize=3)
        ax.annotate(name, (d["visual_tokens"], 100 * ms["mean"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("visual tokens per image in the LLM context")
    ax.set_ylabel("mean accuracy over skills (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_decode_vs_images(results: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    counts = results["image_counts"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, d in results["designs"].items():
        ax.plot(counts, [d[f"decode_ms_per_token_{n}img"]["mean"] for n in counts], marker="o", label=name)
    ax.set_xlabel("images in the prompt")
    ax.set_ylabel("decode ms per token (KV cache on)")
    ax.set_xticks(counts)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
