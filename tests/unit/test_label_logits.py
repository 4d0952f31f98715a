"""Training runs the LM head only where a label is scored: the loss and every gradient are those of the full head."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_vlm
from vlfuse.objectives.lm import label_positions
from vlfuse.objectives.stage import objective

DESIGNS = {
    "concat": {},
    "cross_attention": {"injection": {"kind": "cross_attention", "every": 1, "gate_init": 0.5}},
}


def _batch(model):
    proc = model.processor()
    conv = [{"from": "human", "value": "<image>\nwhat color is the circle ?"}, {"from": "gpt", "value": "red"},
            {"from": "human", "value": "is the square left of the circle ?"}, {"from": "gpt", "value": "no"}]
    short = [{"from": "human", "value": "<image>\nwhat ?"}, {"from": "gpt", "value": "blue and red"}]
    records = [{"id": "a", "images": [torch.rand(3, 8, 8)], "conversations": conv},
               {"id": "b", "images": [torch.rand(3, 8, 8)], "conversations": short}]
    return proc.collate([proc.encode(r) for r in records])  # right padded, unequal lengths


@pytest.mark.parametrize("design", list(DESIGNS))
def test_label_logits_give_the_full_loss_and_gradients(design):
    model = tiny_vlm(**DESIGNS[design]).train()
    batch = _batch(model)
    full = model(**batch)
    full.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    kept = model(**batch, label_logits_only=True)
    kept.loss.backward()
    keep = label_positions(batch["labels"])
    assert kept.logits.shape == (int(keep.sum()), full.logits.shape[-1])
    assert int(keep.sum()) == int((batch["labels"] != -100).sum())  # no label sits at position 0
    torch.testing.assert_close(kept.logits, full.logits[keep], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kept.loss, full.loss, rtol=1e-6, atol=1e-6)
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_lm_objective_trains_through_label_logits():
    model = tiny_vlm().train()
    batch = _batch(model)
    shapes = []
    model.llm.get_output_embeddings().register_forward_hook(lambda m, a, out: shapes.append(out.shape))
    loss = objective("lm").loss(model, batch)["lm"]
    assert shapes == [(int((batch["labels"] != -100).sum()), model.llm.config.vocab_size)]
    torch.testing.assert_close(loss, model(**batch).loss, rtol=1e-6, atol=1e-6)


def test_label_positions_are_the_ones_before_each_label():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, -100, -100, 8]])
    assert label_positions(labels).tolist() == [[False, True, True, False, False], [True, False, False, True, False]]
