"""Probe (session 5): milliseconds per training step of a run config, one torch thread, 20 steps after 5 warm-up
steps, with the data and the vision forward timed apart.

    python docs/recipe-probes/s5_step_time.py src/vlfuse/presets/compare/quick.yaml [key=value ...]
"""

import sys
import time

import torch
import yaml

from vlfuse.config import from_dict
from vlfuse.data.dataset import EncodedDataset, load_records
from vlfuse.objectives.stage import objective
from vlfuse.train.config import RunConfig
from vlfuse.train.loop import build_model

torch.set_num_threads(1)
raw = yaml.safe_load(open(sys.argv[1]))
for item in sys.argv[2:]:  # dotted overrides, list indices included: stages.0.steps=3
    key, value = item.split("=", 1)
    node, parts = raw, key.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[parts[-1]] = yaml.safe_load(value)
raw["data"]["train_size"] = 640
run = from_dict(RunConfig, raw)
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
print(f"tokens per sample (padded) {batch['input_ids'].shape[1]}; step {step * 1000:.0f} ms ({32 / step:.0f} samples/s), "
      f"of which data {data_s / 20 * 1000:.0f} ms and a vision forward {vision_s / 20 * 1000:.0f} ms")
