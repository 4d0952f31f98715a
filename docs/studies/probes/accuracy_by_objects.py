"""Probe: a trained scenes model's held-out accuracy per (skill, objects in the image).

    python docs/studies/probes/accuracy_by_objects.py RUN [N] [SKILL]   # SKILL: also print each question of that skill

Findings: docs/studies/demo-recipe.md.
"""

import sys
from collections import defaultdict

import torch

from vlfuse.config import load_config
from vlfuse.data.scenes import generate, make_sample
from vlfuse.evaluate import evaluate
from vlfuse.model import VLM
from vlfuse.train.config import RunConfig

torch.set_num_threads(1)
run_dir, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400
run = load_config(RunConfig, f"{run_dir}/run.json")
cfg, seed = run.data.scenes, run.data.eval_seed  # the run's own held-out scenes
result = evaluate(VLM.from_pretrained(f"{run_dir}/model"), generate(cfg, n, seed), 100, keep_predictions=True)
table: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
for i, p in enumerate(result["predictions"]):
    objects = make_sample(cfg, seed, i).scenes[0].objects
    cell = table[(p["skill"], len(objects))]
    cell[0], cell[1] = cell[0] + p["correct"], cell[1] + 1
    if len(sys.argv) > 3 and p["skill"] == sys.argv[3]:
        print(p["question"].split("\n")[-1], "|", p["answer"], "|", p["prediction"], [o.cell for o in objects])
for (skill, k), (hit, total) in sorted(table.items()):
    print(f"{skill:9s} {k} objects: {hit}/{total}")
