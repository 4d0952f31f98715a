"""Probe: where does a trained concat model look when asked "where is the C S ?"

For held-out position questions about a scene of 3-4 objects, it takes the attention of the last prompt token
(the one that predicts the answer's first word) in every layer and head, and prints the share on the image's 9
visual tokens and the share on the asked object's token alone (1/9 of the first if attention were uniform).

    python docs/studies/probes/attention_on_object.py RUN/model

Findings: docs/studies/llm-init-and-spatial-attention.md.
"""

import math
import sys

import torch

from vlfuse.data.scenes import SKILLS, ScenesConfig, generate, make_sample, render
from vlfuse.model import VLM

torch.set_num_threads(1)
model = VLM.from_pretrained(sys.argv[1]).eval()
model.llm.config._attn_implementation = "eager"  # the attention weights themselves (sdpa does not return them)
size = model.encoder.image_size
cfg = ScenesConfig(image_size=size, max_objects=4, sizes=("large",), skills={s: float(s == "position") for s in SKILLS})
proc = model.processor()
n_layers, n_heads = model.llm.config.num_hidden_layers, model.llm.config.num_attention_heads
on_image, on_object, n = torch.zeros(n_layers, n_heads), torch.zeros(n_layers, n_heads), 0
for i, record in enumerate(generate(cfg, 300, 3)):
    scene = make_sample(cfg, 3, i).scenes[0]
    question = record["conversations"][0]["value"]
    color, shape = question.split()[-3:-1]  # "... where is the red circle ?"
    asked = [o for o in scene.objects if (o.color, o.shape) == (color, shape)]
    if len(scene.objects) < 3 or len(asked) != 1:
        continue
    batch = proc.collate([proc.encode_prompt(question, [render(scene)])], "left")
    ids = batch["input_ids"]
    image = ids == model.injector.image_token_id  # (1, S)
    with torch.no_grad():
        embeds = model.llm.get_input_embeddings()(ids.masked_fill(image, 0))
        embeds = model.injector.merge(embeds, image, model.encode_images(batch["pixel_values"]))
        out = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], output_attentions=True)
    patches = image[0].nonzero().squeeze(-1)  # (9,) sequence positions of the visual tokens, row-major
    grid = math.isqrt(len(patches))
    target = patches[asked[0].cell[0] * grid + asked[0].cell[1]]
    for layer, att in enumerate(out.attentions):  # (1, H, S, S)
        last = att[0, :, -1]  # (H, S)
        on_image[layer] += last[:, patches].sum(-1)
        on_object[layer] += last[:, target]
    n += 1
print(f"{n} questions; rows are layers, columns heads")
print("share of attention on the 9 visual tokens:\n", (on_image / n).numpy().round(2))
print("share on the asked object's token:\n", (on_object / n).numpy().round(2))
