"""Generation: the KV-cached loop equals full re-computation, and the sampler keeps to its nucleus.

Shapes: ``B`` batch, ``S`` prompt length, ``G`` generated tokens, ``W`` vocabulary size.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_vlm
from vlfuse.generate import generate_ids, generate_text, sample_next

PROMPTS = [("<image> what color is the circle ?", 1), ("<image> left of <image> ?", 2)]


@pytest.fixture(scope="module")
def model():
    """A tiny VLM with large random LLM weights, so that greedy decoding wanders over the vocabulary."""
    torch.manual_seed(0)
    vlm = tiny_vlm().eval()
    with torch.no_grad():
        for p in vlm.llm.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.3)
    return vlm


def prompts(model) -> tuple[list, dict[str, torch.Tensor]]:
    proc = model.processor()
    gen = torch.Generator().manual_seed(1)
    examples = [proc.encode_prompt(text, [torch.rand(3, 8, 8, generator=gen) for _ in range(n)]) for text, n in PROMPTS]
    return examples, proc.collate(examples, padding_side="left")


def greedy_without_cache(model, batch: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """Run the whole sequence every step and append the argmax; the image token is excluded, as in generation."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    new = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(
                ids, attention_mask=mask, pixel_values=batch.get("pixel_values"), image_counts=batch["image_counts"]
            ).logits[:, -1]  # (B, W)
            logits[:, model.injector.image_token_id] = float("-inf")
            top2 = logits.topk(2).values
            assert (top2[:, 0] - top2[:, 1] > 1e-4).all(), "near tie: the comparison would be ill-posed"
            nxt = logits.argmax(-1)  # (B,)
            new.append(nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return torch.stack(new, dim=1)  # (B, G)


def test_cached_greedy_equals_full_forward_argmax(model):
    examples, batch = prompts(model)
    assert batch["attention_mask"][0, 0] == 0  # the one-image prompt really is left-padded
    cached = generate_ids(model, batch, max_new_tokens=6, eos_token_id=-1)  # -1 never occurs: all 6 steps run
    assert cached.shape == (2, 6)
    assert torch.equal(cached, greedy_without_cache(model, batch, 6))
    # and each row equals its own prompt run alone, without padding
    pixels = batch["pixel_values"].split([n for _, n in PROMPTS])
    for b, e in enumerate(examples):
        alone = {
            "input_ids": torch.tensor([e.input_ids]),
            "attention_mask": torch.ones(1, len(e.input_ids)),
            "pixel_values": pixels[b],
            "image_counts": torch.tensor([len(e.images)]),
        }
        assert torch.equal(cached[b : b + 1], greedy_without_cache(model, alone, 6))


def test_generation_never_emits_the_image_placeholder(model):
    image_id = model.injector.image_token_id
    head = model.llm.get_output_embeddings().weight
    saved = head[image_id].clone()
    with torch.no_grad():
        head[image_id] = model.llm.model.norm.weight * 100.0  # make <image> the favourite at every step
    try:
        _, batch = prompts(model)
        ids = generate_ids(model, batch, max_new_tokens=4, eos_token_id=-1)
    finally:
        with torch.no_grad():
            head[image_id] = saved
    assert ids.shape == (2, 4) and not (ids == image_id).any()


def test_generation_stops_at_eos_and_fills_finished_rows(model):
    _, batch = prompts(model)
    free = generate_ids(model, batch, max_new_tokens=5, eos_token_id=-1)  # (B, 5)
    eos = int(free[0, 0])  # row 0 ends at its first token
    ids = generate_ids(model, batch, max_new_tokens=5, eos_token_id=eos)
    hits = (free[1] == eos).nonzero()
    steps = int(hits[0]) + 1 if len(hits) else 5  # the batch stops when row 1 ends too
    assert ids.shape == (2, steps)
    assert (ids[0] == eos).all()  # filled with EOS after it finished
    assert torch.equal(ids[1], free[1, :steps])


# --- sampling ----------------------------------------------------------------------------------------------------
NUCLEUS_PROBS = torch.tensor([0.15, 0.5, 0.05, 0.3])  # sorted: 0.5 (id 1), 0.3 (id 3), 0.15, 0.05


def test_top_p_only_samples_from_the_nucleus():
    logits = NUCLEUS_PROBS.log().expand(4000, 4)  # (B, W)
    gen = torch.Generator().manual_seed(0)
    picks = sample_next(logits, temperature=1.0, top_p=0.7, generator=gen)  # mass before id 0 is 0.8 >= 0.7
    assert set(picks.tolist()) == {1, 3}
    share = (picks == 1).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.03  # renormalised inside the nucleus


def test_top_p_below_the_top_probability_keeps_only_the_top_token():
    picks = sample_next(
        NUCLEUS_PROBS.log().expand(500, 4), temperature=1.0, top_p=0.2, generator=torch.Generator().manual_seed(0)
    )
    assert (picks == 1).all()


def test_top_p_one_can_sample_every_token():
    picks = sample_next(
        NUCLEUS_PROBS.log().expand(4000, 4), temperature=1.0, top_p=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert set(picks.tolist()) == {0, 1, 2, 3}


def test_temperature_zero_is_argmax():
    logits = torch.randn(16, 50)
    for top_p in (1.0, 0.3):
        assert torch.equal(sample_next(logits, 0.0, top_p, torch.Generator().manual_seed(0)), logits.argmax(-1))


def test_seeded_generator_reproduces_samples():
    logits = torch.randn(64, 50)

    def draw(seed: int) -> torch.Tensor:
        return sample_next(logits, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_generate_text_with_a_seed_is_reproducible(model):
    image = torch.rand(3, 8, 8)
    texts = [
        generate_text(model, "<image> what color ?", [image], max_new_tokens=8, temperature=1.0, seed=3)
        for _ in range(2)
    ]
    assert texts[0] == texts[1]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_streamed_pieces_concatenate_to_the_returned_text(model, temperature):
    pieces: list[str] = []
    text = generate_text(
        model,
        "<image> <image> left of ?",
        [torch.rand(3, 8, 8), torch.rand(3, 8, 8)],
        max_new_tokens=8,
        temperature=temperature,
        seed=0,
        stream=pieces.append,
    )
    assert text and pieces
    assert "".join(pieces) == text


@pytest.mark.parametrize("injection", [{"kind": "concat"}, {"kind": "cross_attention", "every": 1}])
def test_a_bfloat16_model_reads_the_processors_float32_pixels(injection):
    vlm = tiny_vlm(injection=injection).to(torch.bfloat16).eval()
    examples = [vlm.processor().encode_prompt("<image> what color is the circle ?", [torch.rand(3, 8, 8)])]
    batch = vlm.processor().collate(examples, padding_side="left")
    assert batch["pixel_values"].dtype == torch.float32
    ids = generate_ids(vlm, batch, max_new_tokens=3, eos_token_id=-1)  # (1, 3)
    assert ids.shape == (1, 3)
    with torch.no_grad():
        assert vlm(batch["input_ids"], pixel_values=batch["pixel_values"]).logits.dtype == torch.bfloat16
