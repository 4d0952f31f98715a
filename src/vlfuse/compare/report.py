"""Gather cell results into ``results.json`` / ``results.md``, a ``rich`` table and two plots.

Per design: accuracy per skill (mean and std over seeds; ``accuracy`` exact match, the one the tables show, and
``accuracy_normalised`` after VQAv2-style normalisation), visual tokens per image in the LLM context,
parameters added and trained, training samples/s, prefill latency and decode ms/token with 1 and 8 images,
KV-cache bytes at the end of the prompt, and peak memory. Everything here is computed from the cells' files,
so gathering twice gives the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from vlfuse.compare.cell import IMAGE_COUNTS, write_json

COST_KEYS = ["train_samples_per_s", "peak_memory_bytes"] + [
    f"{k}_{n}img" for k in ("prefill_ms", "decode_ms_per_token", "kv_bytes") for n in IMAGE_COUNTS]


def mean_std(values: list[float]) -> dict[str, float]:
    """``{"mean", "std"}`` (population std; 0 for one seed)."""
    m = sum(values) / len(values)
    return {"mean": m, "std": math.sqrt(sum((v - m) ** 2 for v in values) / len(values))}


def gather(cells: list[dict[str, Any]], quick: bool, device: str) -> dict[str, Any]:
    """One results object from every cell result (the designs in the order they were asked)."""
    designs: dict[str, Any] = {}
    for c in cells:
        d = designs.setdefault(c["design"], {"cells": []})
        d["cells"].append(c)
    out: dict[str, Any] = {}
    for name, d in designs.items():
        runs = sorted(d["cells"], key=lambda c: c["seed"])
        skills = sorted({s for c in runs for s in c["accuracy"]})
        first = runs[0]
        out[name] = {
            "visual_tokens": first["visual_tokens"], "params_added": first["params_added"],
            "params_trained": first["params_trained"], "params_total": first["params_total"],
            "accuracy": {s: mean_std([c["accuracy"].get(s, 0.0) for c in runs]) for s in skills},
            "accuracy_normalised": {s: mean_std([c.get("accuracy_normalised", c["accuracy"]).get(s, 0.0) for c in runs])
                                    for s in skills},  # cells written before it existed: their exact match
            **{k: mean_std([c[k] for c in runs]) for k in COST_KEYS},
            "memory_kind": first["memory_kind"], "seeds": {str(c["seed"]): c for c in runs},
        }
    seeds = sorted({c["seed"] for c in cells})
    return {"schema": 1, "quick": quick, "device": device, "seeds": seeds, "image_counts": list(IMAGE_COUNTS),
            "machine": machine(device), "train_seconds_total": round(sum(c["train_seconds"] for c in cells), 1),
            "designs": out}


def machine(device: str) -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def _pct(ms: dict[str, float]) -> str:
    return f"{100 * ms['mean']:.1f}" + (f"±{100 * ms['std']:.1f}" if ms["std"] else "")


def _size(b: float) -> str:
    return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 1024:.0f} KiB"


def rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table (shared by the terminal table and ``results.md``)."""
    skills = sorted({s for d in results["designs"].values() for s in d["accuracy"]})
    head = ["design", "tokens/img", "params added", "trained", *skills, "samples/s",
            "prefill ms 1/8 img", "decode ms/tok 1/8 img", "KV cache 1/8 img", "peak mem MiB"]
    body = []
    for name, d in results["designs"].items():
        m = {k: d[k]["mean"] for k in COST_KEYS}
        body.append([name, str(d["visual_tokens"]), f"{d['params_added']:,}", f"{d['params_trained']:,}",
                     *[_pct(d["accuracy"][s]) if s in d["accuracy"] else "-" for s in skills],
                     f"{m['train_samples_per_s']:.0f}", f"{m['prefill_ms_1img']:.1f} / {m['prefill_ms_8img']:.1f}",
                     f"{m['decode_ms_per_token_1img']:.2f} / {m['decode_ms_per_token_8img']:.2f}",
                     f"{_size(m['kv_bytes_1img'])} / {_size(m['kv_bytes_8img'])}",
                     f"{m['peak_memory_bytes'] / 2**20:.0f}"])
    return head, body


def tables(results: dict[str, Any]) -> list[Table]:
    """The table split in two for a terminal: accuracy per skill, then costs (``results.md`` has it whole)."""
    head, body = rows(results)
    n_acc = len(head) - 5  # design, tokens/img, params added, trained, skills... | 5 cost columns
    title = f"vlfuse compare ({'quick' if results['quick'] else 'full'})"
    parts = [(f"{title}: exact-match accuracy % (mean ± std over seeds {results['seeds']})", [0, 1, *range(4, n_acc)]),
             (f"{title}: cost", [0, 2, 3, *range(n_acc, len(head))])]
    out = []
    for name, cols in parts:
        t = Table(title=name)
        for i in cols:  # a cell never wraps or ends in "…": print_tables widens the console instead
            t.add_column(head[i], justify="left" if i == 0 else "right", no_wrap=True)
        for r in body:
            t.add_row(*[r[i] for i in cols])
        out.append(t)
    return out


def print_tables(results: dict[str, Any], console: Console) -> None:
    """Print the results whole: every design name and number in full, whatever the console's width.

    Not a terminal (a log, a pipe, CI): the ``results.md`` table, one line per design. A terminal: the two
    ``rich`` tables, each on a console as wide as the table needs (rich would otherwise shorten cells to ``…``
    to fit the terminal, so ``llava-linear`` and ``llava-mlp`` would both read ``llava-…``).
    """
    if not console.is_terminal:
        console.print(markdown(results), markup=False, highlight=False, soft_wrap=True)
        return
    for t in tables(results):
        wide = console.options.update_width(10_000)
        width = max(console.width, Measurement.get(console, wide, t).maximum)
        Console(file=console.file, width=width, force_terminal=True, color_system=console.color_system).print(t)


def markdown(results: dict[str, Any]) -> str:
    head, body = rows(results)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    mach = results["machine"]
    where = mach["gpu"] or f"{mach['cores']} CPU cores ({mach['cpu']})"
    return (f"Exact-match accuracy in % (mean ± std over seeds {results['seeds']}); latency medians on {where}, "
            f"torch {mach['torch']}.\n\n" + "\n".join(lines) + "\n")


def write_all(results: dict[str, Any], out: Path) -> list[Path]:
    """``results.json``, ``results.md`` and the two plots; returns the paths written."""
    write_json(out / "results.json", results, sort_keys=False)
    (out / "results.md").write_text(markdown(results))
    from vlfuse.compare.plots import plot_accuracy_vs_tokens, plot_decode_vs_images

    return [out / "results.json", out / "results.md", plot_accuracy_vs_tokens(results, out / "accuracy_vs_tokens.png"),
            plot_decode_vs_images(results, out / "decode_vs_images.png")]


def load(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())
