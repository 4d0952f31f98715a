"""Probe: a trained scenes model's spatial and position accuracy on a large held-out set of those
two skills only, split by answer, so a few points of difference are signal rather than noise.

    python docs/studies/probes/spatial_by_axis.py RUN [N]   # N spatial and N position questions (default 500)

Findings: docs/studies/llm-init-and-spatial-attention.md.
"""

import sys
from collections import Counter
from dataclasses import replace

import torch

from vlfuse.config import load_config
from vlfuse.data.scenes import generate
from vlfuse.evaluate import evaluate
from vlfuse.model import VLM
from vlfuse.train.config import RunConfig

torch.set_num_threads(1)
run_dir, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500
run = load_config(RunConfig, f"{run_dir}/run.json")
model = VLM.from_pretrained(f"{run_dir}/model")
for skill in ("spatial", "position"):
    skills = {k: float(k == skill) for k in run.data.scenes.skills}
    cfg = replace(run.data.scenes, skills=skills)
    result = evaluate(model, generate(cfg, n, 7), 100, keep_predictions=True)
    hits, totals, said = Counter(), Counter(), Counter()
    for p in result["predictions"]:
        totals[p["answer"]] += 1
        hits[p["answer"]] += p["correct"]
        said[p["prediction"]] += 1
    acc = sum(hits.values()) / sum(totals.values())
    print(f"{skill}: {100 * acc:.1f}% of {sum(totals.values())}")
    print("  by answer:", ", ".join(f"{a} {hits[a]}/{totals[a]}" for a in sorted(totals)))
    if skill == "position":  # each half of "top left" on its own
        preds = result["predictions"]
        for k, name in ((0, "row"), (1, "column")):
            ok = sum(p["prediction"].split()[k:k + 1] == p["answer"].split()[k:k + 1] for p in preds)
            print(f"  {name} right: {100 * ok / len(preds):.1f}%")
    print("  said:", ", ".join(f"{a} {c}" for a, c in said.most_common(6)))
