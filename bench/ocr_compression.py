"""What compressing the visual tokens costs on reading: each design trained on ocr questions alone, same budget.

The compare quick base mixes ocr into six skills, and at its 1200-step budget no design reads the word better
than the blind control. This probe isolates the skill: every design gets the quick base's data and backbones,
ocr questions only, and the same short budget, so the table shows what each connector keeps of a word.

Run (about 1.5 min per design on one CPU thread)::

    PYTHONPATH=src .venv/bin/python bench/ocr_compression.py --steps 300 --out runs/ocr-compression
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vlfuse.compare.designs import base_mapping, design_run, load_design
from vlfuse.data.dataset import load_records
from vlfuse.evaluate import evaluate
from vlfuse.train.loop import train

DESIGNS = "llava-linear,perceiver-4,avgpool,pixelshuffle,cabstractor,pooled-1,blind"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--designs", default=DESIGNS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/ocr-compression")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = base_mapping(quick=True)
    base["stages"] = [{**base["stages"][-1], "steps": args.steps}]  # one stage of ocr alone: no 1-2 object warm-up
    overrides = ["data.train_size=6000", "data.eval_size=300",
                 "data.scenes.extra_turns=0", f"train.threads={args.threads}"]
    overrides += [f"data.scenes.skills.{s}=0" for s in ("color", "shape", "count", "spatial", "exist", "position")]
    rows = []
    for name in args.designs.split(","):
        design = load_design(name)
        run = design_run(design, base, seed=0, device="cpu", overrides=overrides)
        out = Path(args.out) / name
        model = train(run, out, resume=(out / "checkpoints").is_dir(), show_progress=False)
        result = evaluate(model, load_records(run.data, "eval"))
        rows.append((name, model.visual_tokens, result["accuracy"]["ocr"], result["n"]))
        print(f"{name}: ocr {100 * rows[-1][2]:.1f}% of {result['n']}", flush=True)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\nocr only, {args.steps} steps of the quick base's batch; held-out ocr questions\n")
    print("| design | visual tokens | ocr accuracy |\n|---|---:|---:|")
    for name, tokens, acc, _ in rows:
        print(f"| {name} | {tokens} | {100 * acc:.1f}% |")


if __name__ == "__main__":
    main()
