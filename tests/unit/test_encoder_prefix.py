"""The ``encoder_prefix`` injection built from a config (ViT + MLP + a tiny random T5, the built-in tokenizer):
training on LLaVA-format records, cached generation, the processor's layout and the errors."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_vlm
from vlfuse.generate import generate_ids

TINY_T5 = {"model_type": "t5", "d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 2,
           "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "dropout_rate": 0.0}
QA = [("what color is the circle ?", "red"), ("is the square left of the circle ?", "yes"),
      ("what color is the square ?", "a blue square")]


def _model():
    return tiny_vlm(injection={"kind": "encoder_prefix"}, llm={"config": dict(TINY_T5)})


def _records():
    images = torch.rand(len(QA), 3, 8, 8)
    return [{"id": str(i), "image": images[i], "conversations": [{"from": "human", "value": q},
                                                                 {"from": "gpt", "value": a}]}
            for i, (q, a) in enumerate(QA)]


def test_answers_are_decoder_targets_and_training_lowers_the_loss():
    model = _model()
    proc = model.processor()
    batch = proc.collate([proc.encode(r) for r in _records()], "right")
    eos = model.tokenizer.eos_token_id
    assert batch["labels"][0].tolist()[:2] == [*proc._ids("red"), eos]  # answer + EOS, then -100 padding
    assert batch["labels"].shape[1] < batch["input_ids"].shape[1]  # (B, T): not aligned with the encoder ids
    assert not (batch["input_ids"] == batch["labels"][0, 0]).any()  # the answer is not in the encoder input
    assert (batch["input_ids"][:, :model.visual_tokens] == model.injector.image_token_id).all()  # images first
    full = model(**batch).loss
    kept = model(**batch, label_logits_only=True).loss
    torch.testing.assert_close(kept, full, rtol=1e-6, atol=1e-6)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss = model(**batch, label_logits_only=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.3, losses


def test_cached_generation_equals_recomputing_the_decoder():
    model = _model().eval()
    proc = model.processor()
    batch = proc(text=[q for q, _ in QA], images=[[im] for im in torch.rand(3, 3, 8, 8)], padding_side="left")
    new = generate_ids(model, batch, max_new_tokens=5, eos_token_id=-1)  # (B, 5)
    start = model.llm.config.decoder_start_token_id
    decoder = torch.cat([torch.full((3, 1), start), new[:, :-1]], dim=1)  # (B, 5)
    with torch.no_grad():
        logits = model(**batch, decoder_input_ids=decoder).logits  # (B, 5, W), no cache
    logits[..., model.injector.image_token_id] = float("-inf")  # never generated
    assert logits.argmax(-1).tolist() == new.tolist()
    assert isinstance(model.generate("what color is the circle ?", images=[torch.rand(3, 8, 8)]), str)


def test_placeholders_in_the_text_stay_where_they_are():
    model = _model()
    proc = model.processor()
    batch = proc(text=["what color is <image> ?", "is it red ?"], images=[[torch.rand(3, 8, 8)]] * 2,
                 padding_side="left")
    image = batch["input_ids"] == model.injector.image_token_id  # (B, S)
    assert image.sum(dim=1).tolist() == [model.visual_tokens] * 2
    assert not image[0, 0] and image[1, 0]  # sample 0: padding first, then its text with the image inside


def test_multi_turn_records_and_a_foreign_cache_are_refused():
    model = _model()
    proc = model.processor()
    record = _records()[0]
    record["conversations"] = record["conversations"] * 2
    with pytest.raises(ValueError, match="one human turn followed by one gpt turn"):
        proc.encode(record)
    with pytest.raises(TypeError, match="EncoderState"):
        model(torch.tensor([[5]]), past_key_values=object())
