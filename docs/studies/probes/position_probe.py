"""Probe: can a linear classifier read a lone object's
row / column from a trained model's visual tokens (at the LLM input)? Trains on 3/4 of ~1500 one-object scenes,
reports accuracy on the rest.

    python docs/studies/probes/position_probe.py RUN/model

Findings: docs/studies/demo-recipe.md, docs/studies/llm-init-and-spatial-attention.md.
"""

import math
import sys

import torch
import torch.nn.functional as F

from vlfuse.data.scenes import ScenesConfig, make_sample, render
from vlfuse.model import VLM

torch.manual_seed(0)
torch.set_num_threads(1)
model = VLM.from_pretrained(sys.argv[1]).eval()
size = model.encoder.image_size
cfg = ScenesConfig(image_size=size, min_objects=1, max_objects=2, sizes=("large",), skills={"color": 1})
proc = model.processor()
images, rows, cols = [], [], []
for i in range(3000):
    scene = make_sample(cfg, 5, i).scenes[0]
    if len(scene.objects) == 1:
        images.append(proc.transform(render(scene)))
        rows.append(scene.objects[0].cell[0])
        cols.append(scene.objects[0].cell[1])
with torch.no_grad():
    tokens = model.encode_images(torch.stack(images))  # (n, V, Dt)
grid = math.isqrt(tokens.shape[1])
own = tokens[torch.arange(len(rows)), torch.tensor(rows) * grid + torch.tensor(cols)]  # (n, Dt) the object's patch
for name, labels in (("row", torch.tensor(rows)), ("column", torch.tensor(cols))):
    kinds = (("all tokens", tokens.flatten(1)), ("mean of the tokens", tokens.mean(1)), ("the object's own token", own))
    for kind, feats in kinds:  # the object's own token: a grid of one object per patch
        n = len(labels)
        train, test = slice(0, n * 3 // 4), slice(n * 3 // 4, n)
        z = (feats - feats[train].mean(0)) / (feats[train].std(0) + 1e-6)
        head = torch.nn.Linear(z.shape[1], int(labels.max()) + 1)
        opt = torch.optim.Adam(head.parameters(), 1e-2)
        for _ in range(300):
            opt.zero_grad()
            F.cross_entropy(head(z[train]), labels[train]).backward()
            opt.step()
        acc = (head(z[test]).argmax(1) == labels[test]).float().mean().item()
        print(f"{name} from {kind}: {acc:.1%}")
