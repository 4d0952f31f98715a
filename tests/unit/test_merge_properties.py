"""Properties of concat injection over random batches: every visual vector lands on its placeholder, in order.

Batches come from ``Processor.encode`` + ``collate`` with random images per sample (0 to 3, mixed within a batch),
placeholders at random places among random words, one or two turns, left or right padding. A fake LLM whose
embedding of token ``i`` is ``-(i + 1)`` echoes ``inputs_embeds``, so each position's vector says where it came from.
Shapes: ``B`` batch, ``S`` padded length, ``N_all`` images in the batch, ``V`` visual tokens per image, ``Dt`` width.
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.conftest import WORDS, tiny_vlm
from vlfuse.data.collate import IGNORE, Processor, collate
from vlfuse.data.tokenizer import build_tokenizer
from vlfuse.injection.concat import ConcatConfig, ConcatInjector

IMAGE = "<image>"
DT = 4  # width of the fake LLM
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class EchoLLM(nn.Module):
    """Embeds token ``i`` as the constant vector ``-(i + 1)`` and returns ``inputs_embeds`` as its logits."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, DT)
        with torch.no_grad():
            self.embed.weight.copy_(-(torch.arange(vocab, dtype=torch.float32) + 1)[:, None].expand(vocab, DT))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, inputs_embeds: torch.Tensor, **kwargs) -> SimpleNamespace:
        return SimpleNamespace(logits=inputs_embeds)


@st.composite
def conversations(draw) -> list[list[list[str]]]:
    """One or two ``[question words, answer words]`` turns with 0 to 3 ``<image>`` inserted into the questions."""
    turns = []
    for _ in range(draw(st.integers(1, 2))):
        question = draw(st.lists(st.sampled_from(WORDS), max_size=5))
        answer = draw(st.lists(st.sampled_from(WORDS), max_size=3))
        turns.append([question, answer])
    for _ in range(draw(st.integers(0, 3))):
        question = turns[draw(st.integers(0, len(turns) - 1))][0]
        question.insert(draw(st.integers(0, len(question))), IMAGE)
    return turns


def record(turns: list[list[list[str]]], rid: str, images: list[torch.Tensor]) -> dict:
    conv = []
    for question, answer in turns:
        conv += [{"from": "human", "value": " ".join(question)}, {"from": "gpt", "value": " ".join(answer)}]
    return {"id": rid, "images": images, "conversations": conv}


def expected_items(turns: list[list[list[str]]], tok, first_image: int, v: int) -> list[tuple]:
    """The sample's positions, built from the template by hand: ``("text", id, label)`` or ``("image", n, v)``."""
    def ids(word: str) -> int:  # a word inside a sentence: the byte-level BPE's token for " word"
        return tok.convert_tokens_to_ids(f"Ġ{word}")

    items: list[tuple] = [("text", tok.bos_token_id, IGNORE)]
    n = first_image
    for question, answer in turns:
        for word in ["user", ":", *question, "assistant", ":"]:
            if word == IMAGE:
                items += [("image", n, j) for j in range(v)]
                n += 1
            else:
                items.append(("text", ids(word), IGNORE))
        items += [("text", ids(w), ids(w)) for w in answer] + [("text", tok.eos_token_id, tok.eos_token_id)]
    return items


@cache
def word_tokenizer():
    return build_tokenizer(WORDS)


@PROPERTY
@given(
    batch=st.lists(conversations(), min_size=1, max_size=4),
    v=st.integers(1, 4),
    side=st.sampled_from(["left", "right"]),
)
def test_visual_tokens_land_on_their_placeholders(batch, v, side):
    tok = word_tokenizer()
    image_id = tok.convert_tokens_to_ids(IMAGE)
    proc = Processor(tok, lambda im: im, tokens_per_image=v, max_length=10_000)
    counts = [sum(q.count(IMAGE) for q, _ in turns) for turns in batch]
    examples = [
        proc.encode(record(turns, f"s{b}", [torch.zeros(3, 1, 1)] * c))
        for b, (turns, c) in enumerate(zip(batch, counts))
    ]
    out = collate(examples, tok.pad_token_id, side)
    ids, mask, labels = out["input_ids"], out["attention_mask"], out["labels"]
    assert out["image_counts"].tolist() == counts
    assert ("pixel_values" in out) == (sum(counts) > 0)

    n_all = sum(counts)
    # visual[n, j, d] = n * 1000 + j + 1 + d / 8: unique per (image, token), exact in float32
    visual = (
        torch.arange(n_all)[:, None, None] * 1000.0
        + torch.arange(v)[None, :, None]
        + 1
        + torch.arange(DT)[None, None, :] / 8
    )  # (N_all, V, Dt)
    llm = EchoLLM(len(tok))
    injector = ConcatInjector(ConcatConfig(), llm)
    injector.image_token_id = image_id
    embeds = injector(llm, ids, visual, attention_mask=mask, image_counts=out["image_counts"]).logits  # (B, S, Dt)

    s = ids.shape[1]
    first = 0
    for b, turns in enumerate(batch):
        items = expected_items(turns, tok, first, v)
        first += counts[b]
        n = len(items)
        real = range(s - n, s) if side == "left" else range(n)
        # attention_mask marks exactly the real tokens, on the right side of the padding
        expected_mask = torch.zeros(s, dtype=torch.long)
        expected_mask[list(real)] = 1
        assert torch.equal(mask[b], expected_mask)
        for pos, item in zip(real, items):
            if item[0] == "text":
                _, tid, label = item
                assert ids[b, pos] == tid and labels[b, pos] == label
                assert torch.equal(embeds[b, pos], torch.full((DT,), -(tid + 1.0)))  # text embedding untouched
            else:
                _, n_img, j = item
                assert ids[b, pos] == image_id and labels[b, pos] == IGNORE
                assert torch.equal(embeds[b, pos], visual[n_img, j])
        pads = [p for p in range(s) if p not in real]
        assert (ids[b, pads] == tok.pad_token_id).all() and (labels[b, pads] == IGNORE).all()
        assert (embeds[b, pads] == -(tok.pad_token_id + 1.0)).all()
    assert first == n_all


# RoPE (llama) only sees relative positions, so a wrong position shift from padding shows only in GPT-2's
# absolute position embeddings; both families must agree.
TINY_GPT2 = {
    "model_type": "gpt2",
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 2,
    "n_positions": 256,
    "bos_token_id": 2,
    "eos_token_id": 3,
}


@cache
def shared_vlm(family: str):
    return (tiny_vlm(llm={"config": TINY_GPT2}) if family == "gpt2" else tiny_vlm()).eval()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@PROPERTY
@given(batch=st.lists(conversations(), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_left_and_right_padding_give_the_same_logits(family, batch, seed):
    model = shared_vlm(family)
    proc = model.processor()
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for b, turns in enumerate(batch):
        n = sum(q.count(IMAGE) for q, _ in turns)
        examples.append(proc.encode(record(turns, f"s{b}", [torch.rand(3, 8, 8, generator=gen) for _ in range(n)])))
    logits = {}
    with torch.no_grad():
        for side in ("left", "right"):
            out = proc.collate(examples, padding_side=side)
            logits[side] = model(
                out["input_ids"],
                attention_mask=out["attention_mask"],
                pixel_values=out.get("pixel_values"),
                image_counts=out["image_counts"],
            ).logits
    s = logits["left"].shape[1]
    for b, e in enumerate(examples):
        n = len(e.input_ids)
        torch.testing.assert_close(logits["left"][b, s - n :], logits["right"][b, :n], atol=1e-4, rtol=0)
