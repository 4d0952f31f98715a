"""One cell of a comparison, ``(design, seed)``: ``python -m vlfuse.compare.cell train DIR`` in a process of its own.

Phase ``train`` trains the cell's run (resuming from its newest checkpoint), evaluates it on the held-out
scenes and writes ``train.json`` (accuracy, throughput, peak memory). Phase ``measure`` loads the trained model
and writes ``result.json`` (everything in ``train.json`` plus parameters, visual tokens, latency, KV cache).
A cell is finished when ``result.json`` exists; both files are written atomically, so a killed comparison never
leaves a half-written one. The runner calls ``measure_phase`` in its own process, after all training.
Layout: ``DIR/cell.json`` (design, seed, run config), ``DIR/run/`` (checkpoints, metrics, model).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from vlfuse.config import from_dict
from vlfuse.train.config import RunConfig

IMAGE_COUNTS = (1, 8)  # latency and KV cache are measured with this many images in the prompt


def write_json(path: Path, data: dict[str, Any], sort_keys: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys))
    os.replace(tmp, path)


def read_spec(cell: Path) -> tuple[dict[str, Any], RunConfig]:
    spec = json.loads((cell / "cell.json").read_text())
    return spec, from_dict(RunConfig, spec["run"])


def train_phase(cell: Path) -> dict[str, Any]:
    """Train (or resume), evaluate, and write ``train.json``."""
    from vlfuse.compare.measure import peak_memory_bytes
    from vlfuse.data.dataset import load_records
    from vlfuse.evaluate import evaluate
    from vlfuse.kinds import load_model
    from vlfuse.train.checkpoint import latest_checkpoint
    from vlfuse.train.loop import resolve_device, train
    from vlfuse.train.progress import read_metrics

    spec, run = read_spec(cell)
    out = cell / "run"
    if (out / "model" / "config.json").is_file():
        model = load_model(out / "model").to(resolve_device(run.train.device))
    else:
        model = train(run, out, resume=latest_checkpoint(out) is not None, show_progress=False)
    result = evaluate(model, load_records(run.data, "eval"), run.train.eval_batch_size)
    steps = read_metrics(out / "metrics.jsonl")
    batch = {s.name: s.batch_size * s.grad_accum for s in run.stages}
    seconds = sum(batch[m["stage"]] / m["samples_per_s"] for m in steps)  # time inside optimizer steps
    samples = sum(batch[m["stage"]] for m in steps)
    device = next(model.parameters()).device
    record = {"design": spec["design"], "seed": spec["seed"], "accuracy": result["accuracy"],
              "accuracy_normalised": result["accuracy_normalised"],
              "eval_samples": result["n"], "train_samples": samples, "train_seconds": round(seconds, 2),
              "train_samples_per_s": samples / max(seconds, 1e-9), "peak_memory_bytes": peak_memory_bytes(device),
              "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"}
    write_json(cell / "train.json", record)
    return record


def trained_parameters(run: RunConfig) -> int:
    """Most parameters any stage of ``run`` trains (LoRA adapters counted as what trains), on a fresh model."""
    from vlfuse.data.dataset import load_records
    from vlfuse.train.loop import build_model
    from vlfuse.train.policy import apply_policy

    records = load_records(run.data, "train") if run.data.source != "scenes" else []  # scenes need no records
    best, fresh = 0, build_model(run, records)
    for stage in run.stages:
        model = copy.deepcopy(fresh)  # each stage's policy applies to a fresh model
        apply_policy(model, stage.policy, stage.lora)
        best = max(best, sum(p.numel() for p in model.parameters() if p.requires_grad))
    return best


def measure_phase(cell: Path, repeats: int = 5) -> dict[str, Any]:
    """Load the trained model, measure its costs, and write ``result.json`` (the cell is then finished)."""
    from vlfuse.kinds import load_model
    from vlfuse.train.loop import resolve_device

    _, run = read_spec(cell)
    if run.train.threads:
        torch.set_num_threads(run.train.threads)
    record = json.loads((cell / "train.json").read_text())
    model = load_model(cell / "run" / "model").to(resolve_device(run.train.device)).eval()
    record.update(model.costs(IMAGE_COUNTS, repeats), params_trained=trained_parameters(run))
    write_json(cell / "result.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    phase, cell = (argv or sys.argv[1:])[:2]
    {"train": train_phase, "measure": measure_phase}[phase](Path(cell))
    return 0


if __name__ == "__main__":
    sys.exit(main())
