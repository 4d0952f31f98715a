"""The contrastive losses equal a direct computation on known inputs; the dual encoder's temperature is learned."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vlfuse.objectives.contrastive import gather, infonce_loss, sigmoid_loss

# three pairs in 2-D: unit vectors at known angles, so every cosine is a known number
IMAGE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
TEXT = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
SCALE = torch.tensor(math.log(2.0))  # exp(logit_scale) = 2


def _direct_infonce(image, text, t):
    n, total = len(image), 0.0
    for i in range(n):  # image i against every text, then text i against every image
        row = [t * float(image[i] @ text[j]) for j in range(n)]
        total += -(row[i] - math.log(sum(math.exp(v) for v in row)))
        col = [t * float(text[i] @ image[j]) for j in range(n)]
        total += -(col[i] - math.log(sum(math.exp(v) for v in col)))
    return total / (2 * n)


def test_infonce_equals_a_direct_computation():
    got = infonce_loss(IMAGE, TEXT, SCALE)
    assert float(got) == pytest.approx(_direct_infonce(IMAGE, TEXT, 2.0), abs=1e-6)
    # by hand for image 0: cosines (0.8, 0, 1) x 2 -> -log(e^1.6 / (e^1.6 + e^0 + e^2))
    row0 = -(1.6 - math.log(math.exp(1.6) + 1 + math.exp(2.0)))
    assert float(F.cross_entropy(2 * IMAGE @ TEXT.t(), torch.arange(3), reduction="none")[0]) == pytest.approx(row0)


def test_sigmoid_equals_a_direct_computation():
    bias = torch.tensor(-1.0)
    total = 0.0
    for i in range(3):
        for j in range(3):
            z = 1.0 if i == j else -1.0
            logit = 2.0 * float(IMAGE[i] @ TEXT[j]) - 1.0
            total += -math.log(1 / (1 + math.exp(-z * logit)))
    assert float(sigmoid_loss(IMAGE, TEXT, SCALE, bias)) == pytest.approx(total / 3, abs=1e-6)


def test_equal_captions_are_positives_of_each_other():
    same = torch.tensor([[True, False, True], [False, True, False], [True, False, True]])  # pairs 0 and 2 share text
    got = infonce_loss(IMAGE, TEXT, SCALE, same=same)
    logits = 2 * IMAGE @ TEXT.t()
    targets = same.float() / same.float().sum(1, keepdim=True)
    want = (-(targets * logits.log_softmax(1)).sum(1).mean() - (targets * logits.t().log_softmax(1)).sum(1).mean()) / 2
    assert float(got) == pytest.approx(float(want), abs=1e-6)
    # sigmoid: the shared-caption pairs count as matches (z = +1)
    z = same.float() * 2 - 1
    want_sig = -F.logsigmoid(z * (logits - 1)).sum() / 3
    assert float(sigmoid_loss(IMAGE, TEXT, SCALE, torch.tensor(-1.0), same=same)) == pytest.approx(float(want_sig))


def test_gather_without_a_group_is_the_identity():
    x = torch.randn(4, 3)
    out, offset = gather(x, None)
    assert out is x and offset == 0


def _tiny_model(loss):
    from vlfuse.kinds import build_model
    from vlfuse.kinds.dual_encoder import DualEncoderConfig

    text = {"config": {"model_type": "clip_text_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32}}
    enc = {"kind": "vit", "image_size": 8, "patch_size": 4, "width": 32, "depth": 1, "heads": 2}
    from vlfuse.config import from_dict

    cfg = from_dict(DualEncoderConfig, {"encoder": enc, "text": text, "embed_dim": 16, "loss": loss,
                                        "head": {"pool": "mean", "norm": False}})
    return build_model(cfg, texts=["a red circle .", "a blue square .", "a green triangle ."])


@pytest.mark.parametrize("loss", ["infonce", "sigmoid"])
def test_the_temperature_is_learned(loss):
    torch.manual_seed(0)
    model = _tiny_model(loss)
    proc = model.processor()
    batch = proc.texts(["a red circle .", "a blue square .", "a green triangle .", "a red square ."])
    pixels = torch.randn(4, 3, 8, 8)
    start = float(model.logit_scale.detach())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        out = model(pixels, batch["input_ids"], batch["attention_mask"], return_loss=True)
        opt.zero_grad()
        out.loss.backward()
        assert model.logit_scale.grad is not None and float(model.logit_scale.grad.abs()) > 0
        opt.step()
        losses.append(float(out.loss.detach()))
    assert float(model.logit_scale.detach()) != pytest.approx(start, abs=1e-3)  # it moved
    assert losses[-1] < losses[0]
    if loss == "sigmoid":
        assert model.logit_bias is not None and model.logit_bias.grad is not None


def test_a_dual_encoder_refuses_the_lm_objective():
    with pytest.raises(ValueError, match="objective: contrastive"):
        _tiny_model("infonce").objective("lm")


def test_a_policy_cannot_freeze_what_a_kind_lacks():
    from vlfuse.train.policy import apply_policy

    model = _tiny_model("infonce")
    apply_policy(model, {"text": "freeze", "llm": "train"})  # llm: the default, absent here, ignored
    assert not any(p.requires_grad for p in model.text.parameters())
    with pytest.raises(ValueError, match="components are: encoder, head, text"):
        apply_policy(model, {"llm": "freeze"})
