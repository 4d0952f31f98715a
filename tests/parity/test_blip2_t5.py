"""Parity with transformers' BLIP-2 + Flan-T5 (``Blip2ForConditionalGeneration`` with a ``T5Config`` LLM) on the user
path: ``VLM.from_transformers(folder)``, ``model.processor()(text=, images=, padding_side=)``; encoder ids, decoder
logits (fp32) and 16-token greedy generation equal transformers', also after ``save_pretrained`` + ``from_pretrained``;
the seq2seq training loss equals transformers' and decreases over a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessorPil,
    T5Config,
    T5Tokenizer,
)

from tests.parity.test_qformer_parity import tiny_blip2_config
from vlfuse import VLM
from vlfuse.generate import generate_ids
from vlfuse.injection.encoder_prefix import EncoderPrefixConfig
from vlfuse.llm import LLMConfig
from vlfuse.model import VLMConfig

WORDS = ["Question:", "Answer:", "what", "color", "is", "the", "circle", "square", "?", "red", "blue", "left", "of",
         "and", "a", "yes", "no", "how", "many"]
PROMPTS = ["Question: what color is the circle ? Answer:", "how many ?", "Question: is the square left of a circle ?"]
EOS = 1  # T5's </s>


def _tokenizer() -> T5Tokenizer:
    """A T5 (Unigram) tokenizer over ``WORDS``: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2; appends ``</s>``, no BOS."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [("▁" + w, -1.0 - 0.01 * i) for i, w in enumerate(WORDS)]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz?:"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _save_tiny_blip2_t5(path):
    """A random BLIP-2 with a Flan-T5-shaped LLM (gated-gelu FF, ``tie_word_embeddings=False``: unscaled decoder
    output), saved with its ``Blip2Processor`` (which adds ``<image>`` to the tokenizer)."""
    proc = Blip2Processor(BlipImageProcessorPil(size={"height": 8, "width": 8}), _tokenizer(), num_query_tokens=6)
    tok = proc.tokenizer
    t5 = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, num_decoder_layers=2,
                  feed_forward_proj="gated-gelu", tie_word_embeddings=False, relative_attention_num_buckets=8,
                  relative_attention_max_distance=16, dropout_rate=0.0, pad_token_id=0, eos_token_id=EOS,
                  decoder_start_token_id=0)
    base = tiny_blip2_config()
    cfg = Blip2Config(vision_config=base.vision_config.to_dict(), qformer_config=base.qformer_config.to_dict(),
                      text_config=t5.to_dict(), num_query_tokens=6,
                      image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    hf = Blip2ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        hf.query_tokens.normal_()  # transformers initialises them to zero; any values must match
        for name, p in hf.language_model.named_parameters():  # T5's init greedily repeats its input token (the
            if "layer_norm" not in name:  # head is tied to the embeddings): small embeddings, larger layers
                p.normal_(0.0, 0.02 if name == "shared.weight" else 0.5)
    hf.save_pretrained(path)
    proc.save_pretrained(path)
    return hf, proc


def _images(n: int) -> list[Image.Image]:
    rng = np.random.RandomState(0)  # non-square sizes: the processor stretches each to 8 x 8
    return [Image.fromarray(rng.randint(0, 256, (10 + 3 * i, 12 + i, 3), dtype=np.uint8)) for i in range(n)]


def _hf_greedy(hf, batch, n: int) -> torch.Tensor:
    """transformers' greedy ids without the decoder start token, EOS-filled after EOS to ``n`` (as ``generate_ids``)."""
    image_id = hf.config.image_token_index  # generate_ids never writes the image placeholder
    out = hf.generate(**batch, max_new_tokens=n, do_sample=False, suppress_tokens=[image_id])[:, 1:]  # (B, <= n)
    out = torch.cat([out, out.new_full((out.shape[0], n - out.shape[1]), EOS)], dim=1)
    after = (out == EOS).long().cumsum(dim=1) > 0  # at and after the first EOS
    return out.masked_fill(after, EOS)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("blip2_t5")
    hf, proc = _save_tiny_blip2_t5(path)
    return path, hf, proc


@pytest.mark.parametrize("side", ["left", "right"])
def test_user_path_ids_logits_and_greedy_match_transformers(saved, side):
    path, hf, hf_proc = saved
    ours = VLM.from_transformers(str(path)).eval()
    assert ours.injector.config.kind == "encoder_prefix" and ours.visual_tokens == 6
    images = _images(len(PROMPTS))
    ref = hf_proc(images=images, text=PROMPTS, padding=True, padding_side=side, return_tensors="pt")
    batch = ours.processor()(text=PROMPTS, images=[[im] for im in images], padding_side=side)
    # transformers puts the 6 image tokens before the prompt and its padding: (images, pads, text) on the left
    torch.testing.assert_close(batch["input_ids"], ref["input_ids"], rtol=0, atol=0)
    torch.testing.assert_close(batch["attention_mask"], ref["attention_mask"], rtol=0, atol=0)
    torch.testing.assert_close(batch["pixel_values"], ref["pixel_values"], rtol=0, atol=1e-6)
    decoder_ids = torch.tensor([[0, 5, 9, 11, 3], [0, 7, 7, 2, 14], [0, 1, 4, 6, 8]])
    with torch.no_grad():
        want = hf(**ref, decoder_input_ids=decoder_ids).logits  # (B, T, W)
        got = ours(**batch, decoder_input_ids=decoder_ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[0], got[1])  # different images and prompts give different answers
    want_ids = _hf_greedy(hf, ref, 16)
    got_ids = generate_ids(ours, batch, max_new_tokens=16, eos_token_id=EOS)
    assert got_ids.shape == (3, 16) and got_ids.tolist() == want_ids.tolist()
    assert len(set(got_ids.flatten().tolist())) > 8 and (got_ids == EOS).any()  # varied; a row stops at EOS
    # saved and loaded as a vlfuse model: the same logits and tokens
    ours.save_pretrained(str(path / f"vlfuse-{side}"))
    again = VLM.from_pretrained(str(path / f"vlfuse-{side}")).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch, decoder_input_ids=decoder_ids).logits, got, rtol=0, atol=0)
    assert generate_ids(again, batch, max_new_tokens=16, eos_token_id=EOS).tolist() == want_ids.tolist()


def test_kv_cache_generation_equals_recomputing_the_decoder(saved):
    path, _, _ = saved
    ours = VLM.from_transformers(str(path)).eval()
    batch = ours.processor()(text=PROMPTS[:2], images=[[im] for im in _images(2)], padding_side="left")
    new = generate_ids(ours, batch, max_new_tokens=6, eos_token_id=-1)  # (B, 6), no early stop
    decoder = torch.cat([torch.zeros(2, 1, dtype=torch.long), new[:, :-1]], dim=1)  # start token + all but the last
    with torch.no_grad():
        logits = ours(**batch, decoder_input_ids=decoder).logits  # (B, 6, W), no cache
    assert logits.argmax(-1).tolist() == new.tolist()


def _records():
    return [{"id": str(i), "image": im, "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
            for i, (im, q, a) in enumerate(zip(_images(3), PROMPTS, ["red", "yes no", "a blue square"]))]


def test_training_loss_is_transformers_seq2seq_loss_and_decreases(saved):
    path, hf, hf_proc = saved
    ours = VLM.from_transformers(str(path)).eval()  # the Q-Former's dropout is off for the comparison
    proc = ours.processor()
    records = _records()
    batch = proc.collate([proc.encode(r) for r in records], "right")
    targets = [hf_proc.tokenizer(r["conversations"][1]["value"]).input_ids for r in records]  # answer + </s>
    labels = torch.full((3, max(map(len, targets))), -100)
    for i, t in enumerate(targets):
        labels[i, :len(t)] = torch.tensor(t)
    assert batch["labels"].tolist() == labels.tolist()  # the answers are decoder targets, not in input_ids
    ref = hf_proc(images=[r["image"] for r in records], text=[r["conversations"][0]["value"] for r in records],
                  padding=True, padding_side="right", return_tensors="pt")
    assert batch["input_ids"].tolist() == ref["input_ids"].tolist()
    with torch.no_grad():
        want = hf(**ref, labels=labels).loss
        got = ours(**batch).loss
        kept = ours(**batch, label_logits_only=True).loss  # the head only where a target is scored
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kept, want, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    ours.train()
    opt = torch.optim.AdamW(ours.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = ours(**batch, label_logits_only=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.1, losses


def test_mismatched_injection_and_llm_are_refused():
    t5 = {"model_type": "t5", "vocab_size": 64, "d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 48,
          "num_layers": 1, "feed_forward_proj": "gated-gelu"}
    with pytest.raises(ValueError, match="encoder_prefix"):
        VLM.from_config(VLMConfig(llm=LLMConfig(config=t5)), texts=["a b"])  # concat cannot run T5
    with pytest.raises(ValueError, match="encoder-decoder"):
        VLM.from_config(VLMConfig(injection=EncoderPrefixConfig()), texts=["a b"])  # a Llama has no encoder
