"""BLIP-2 stage-1 objectives: each mask hides exactly what it must, hard negatives follow the ITC softmax."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_vlm
from vlfuse.connectors.qformer import QFormer, QFormerConfig, mask_for
from vlfuse.objectives.blip2 import blip2_losses, pair_processor
from vlfuse.objectives.itg import itg_logits
from vlfuse.objectives.itm import itm_logits, sample_hard_negatives

QF = {"kind": "qformer", "hidden_size": 32, "layers": 3, "heads": 4, "intermediate_size": 48, "num_queries": 4,
      "cross_attention_frequency": 2, "vocab_size": 512, "max_text_positions": 16, "embed_dim": 16}


def qformer() -> QFormer:
    cfg = QFormerConfig(**{k: v for k, v in QF.items() if k != "kind"})
    return QFormer(cfg, in_dim=24, out_dim=20).eval()


def inputs():
    image = torch.randn(2, 9, 24)
    ids = torch.randint(0, 30, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    return image, ids, mask


def test_mask_matrices():
    m = mask_for("causal", 2, torch.tensor([[1, 1, 0]]))[0, 0].int()  # columns: q q t t pad
    assert m.tolist() == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]
    m = mask_for("unimodal", 2, torch.tensor([[1, 1, 0]]))[0, 0].int()
    assert m.tolist() == [[1, 1, 0, 0, 0]] * 2 + [[0, 0, 1, 1, 0]] * 3
    assert mask_for("bidirectional", 2, torch.tensor([[1, 1, 0]]))[0, 0].int().tolist() == [[1, 1, 1, 1, 0]] * 5


@torch.no_grad()
def test_unimodal_mask_itc_queries_and_text_never_see_each_other():
    qf, (image, ids, mask) = qformer(), inputs()
    q, t = qf.encode(image, ids, mask, "unimodal")
    q2, t2 = qf.encode(image, (ids + 1) % 30, mask, "unimodal")  # other text
    q3, t3 = qf.encode(image + 1, ids, mask, "unimodal")  # other image
    torch.testing.assert_close(q2, q, rtol=0, atol=0)
    torch.testing.assert_close(t3, t, rtol=0, atol=0)
    assert not torch.allclose(q3, q) and not torch.allclose(t2, t)  # each sees its own modality
    # equal to separate passes: queries alone, text alone (how transformers computes ITC)
    torch.testing.assert_close(qf.encode(image)[0], q, atol=1e-6, rtol=0)
    torch.testing.assert_close(qf.encode(None, ids, mask)[1], t, atol=1e-6, rtol=0)


@torch.no_grad()
def test_bidirectional_mask_itm_sees_everything_but_padding():
    qf, (image, ids, mask) = qformer(), inputs()
    ref = itm_logits(qf, image, ids, mask)
    other_text = ids.clone()
    other_text[:, 2] = (other_text[:, 2] + 1) % 30
    assert not torch.allclose(itm_logits(qf, image, other_text, mask), ref)  # queries read the text
    assert not torch.allclose(itm_logits(qf, image + 1, ids, mask), ref)
    padded = ids.clone()
    padded[1, 4:] = (padded[1, 4:] + 7) % 30  # only sample 1's padding changes
    torch.testing.assert_close(itm_logits(qf, image, padded, mask), ref, rtol=0, atol=0)


@torch.no_grad()
def test_causal_mask_itg_text_sees_queries_and_earlier_text_queries_see_no_text():
    qf, (image, ids, mask) = qformer(), inputs()
    q, _ = qf.encode(image, ids, mask, "causal")
    ref = itg_logits(qf, image, ids, mask)
    later = ids.clone()
    later[:, 3:] = (later[:, 3:] + 5) % 30
    torch.testing.assert_close(qf.encode(image, later, mask, "causal")[0], q, rtol=0, atol=0)  # queries: no text
    got = itg_logits(qf, image, later, mask)
    torch.testing.assert_close(got[:, :3], ref[:, :3], rtol=0, atol=0)  # positions < 3 never see 3, 4, 5
    assert not torch.allclose(got[0, 3:], ref[0, 3:])
    earlier = ids.clone()
    earlier[:, 1] = (earlier[:, 1] + 5) % 30
    assert not torch.allclose(itg_logits(qf, image, earlier, mask)[:, 2:], ref[:, 2:])  # later text sees it
    assert not torch.allclose(itg_logits(qf, image + 1, ids, mask), ref)  # text sees the queries
    first = ids.clone()
    first[:, 0] = 0  # [CLS] or not: ITG always decodes from [DEC]
    torch.testing.assert_close(itg_logits(qf, image, first, mask), ref, rtol=0, atol=0)


def test_hard_negatives_follow_the_softmax_and_never_pick_a_positive():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0, 2.0], [0.5, 2.0, 0.5, 0.0, 1.5], [1.0, 1.0, 1.0, 1.0, 1.0],
                           [2.0, -2.0, 0.0, 4.0, 1.0], [0.0, 0.0, 3.0, 0.0, 2.0]])
    groups = torch.tensor([0, 1, 2, 3, 0])  # texts 0 and 4 are the same caption: positives of each other
    same = groups[:, None] == groups[None, :]
    # k copies of the batch in one call: a block-diagonal (5k, 5k) problem whose off-block pairs are marked as
    # positives, so each row draws only inside its own copy (one call instead of k; draws stay independent)
    k, calls = 100, 40
    block = torch.block_diag(*[torch.ones(5, 5)] * k).bool()
    big_logits = logits.repeat(k, k)
    big_same = same.repeat(k, k) | ~block
    g = torch.Generator().manual_seed(0)
    texts, images = torch.zeros(5, 5), torch.zeros(5, 5)
    rows = torch.arange(5 * k) % 5
    for _ in range(calls):
        t, i, usable = sample_hard_negatives(big_logits, big_same, g)
        texts.index_put_((rows, t % 5), torch.ones(5 * k), accumulate=True)
        images.index_put_((rows, i % 5), torch.ones(5 * k), accumulate=True)
        assert usable.all() and not big_same[torch.arange(5 * k), t].any()
    n = k * calls
    for counts, sims in ((texts, logits), (images, logits.t())):  # a text per image; an image per text
        assert counts[same].sum() == 0  # never a positive
        expected = sims.masked_fill(same, float("-inf")).softmax(dim=1)
        torch.testing.assert_close(counts / n, expected, atol=0.03, rtol=0)  # 4000 draws a row: ~4 standard errors


def test_a_batch_of_one_caption_has_no_usable_negative():
    _, _, usable = sample_hard_negatives(torch.zeros(3, 3), torch.ones(3, 3, dtype=torch.bool))
    assert not usable.any()


def test_stage1_losses_train_the_qformer_and_encoder_only():
    model = tiny_vlm(connector=dict(QF))
    proc = pair_processor(model)
    records = [{"id": str(i), "image": torch.rand(3, 8, 8), "conversations": [
        {"from": "human", "value": "<image> describe"}, {"from": "gpt", "value": text}]}
        for i, text in enumerate(["a red circle", "a blue square", "a red circle", "yes no"])]
    batch = proc.collate([proc.encode(r) for r in records])
    assert batch["text_group"].tolist() == [0, 1, 0, 2] and batch["text_ids"][:, 0].eq(510).all()
    losses = blip2_losses(model, batch)
    assert set(losses) == {"itc", "itm", "itg"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.connector.heads.temp.grad is not None and model.connector.query_tokens.grad is not None
    assert any(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.llm.parameters())
    assert model.connector.proj.weight.grad is None  # the LLM projection is stage 2's


def test_stage1_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"connector\.kind=qformer"):
        pair_processor(tiny_vlm())
    with pytest.raises(ValueError, match="vocab_size >= "):
        pair_processor(tiny_vlm(connector={**QF, "vocab_size": 0}))
    with pytest.raises(ValueError, match="vocab_size >= "):
        pair_processor(tiny_vlm(connector={**QF, "vocab_size": 10}))
