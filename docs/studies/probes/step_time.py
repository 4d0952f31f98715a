"""Probe: milliseconds per training step of a run config, one torch thread, 20 steps after 5 warm-up
steps, with the data and the vision forward timed apart.

    python docs/studies/probes/step_time.py CONFIG.yaml [key=value ...]   # overrides as in --set

Findings: docs/studies/demo-recipe.md.
"""

import sys
import time

import torch

from vlfuse.config import load_config
from vlfuse.data.dataset import EncodedDataset, load_records
from vlfuse.objectives.stage import objective
from vlfuse.train.config import RunConfig
from vlfuse.train.loop import build_model

torch.set_num_threads(1)
run = load_config(RunConfig, sys.argv[1], [*sys.argv[2:], "data.train_size=640"])  # dotted overrides, as --set
records = load_records(run.data, "train")
model = build_model(run, records).train()
goal = objective("lm")
stream = EncodedDataset(records, goal.processor(model), ()).batches(0, 32, seed=0)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
data_s = vision_s = 0.0
for i in range(25):
    if i == 5:
        t0 = time.perf_counter()
    t = time.perf_counter()
    batch = next(stream)
    t1 = time.perf_counter()
    with torch.no_grad():
        model.encode_images(batch["pixel_values"])
    t2 = time.perf_counter()
    if i >= 5:
        data_s, vision_s = data_s + t1 - t, vision_s + t2 - t1
    sum(goal.loss(model, batch).values()).backward()
    opt.step()
    opt.zero_grad()
step = (time.perf_counter() - t0) / 20
print(f"tokens per sample (padded) {batch['input_ids'].shape[1]}; "
      f"step {step * 1000:.0f} ms ({32 / step:.0f} samples/s), "
      f"of which data {data_s / 20 * 1000:.0f} ms and a vision forward {vision_s / 20 * 1000:.0f} ms")
