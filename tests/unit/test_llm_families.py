"""Every LLM family in ``vlfuse.llm.LLM_TABLE`` works under both injections, against ``transformers`` itself.

For each family a tiny random LLM is built from a dict below, saved to ``tmp_path`` and loaded twice: by
``transformers`` (``AutoModelForCausalLM.from_pretrained``: the reference) and by a VLM (``llm.path``). Then:
concat on text is the LLM (logits, greedy ids of ``generate``); concat with images trains; cross-attention wraps
every decoder layer, is the LLM while its gates are shut, and generates with its KV cache exactly as without it;
``label_logits_only`` gives the full loss. Sliding windows are shorter than the prompts, so the sliding-window
masks and caches (Mistral, Phi-3, Gemma 2 / 3) are exercised.
Shapes: ``B`` batch, ``S`` sequence length, ``G`` generated tokens, ``W`` vocabulary size.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

from tests.conftest import WORDS, tiny_vlm
from vlfuse.data.tokenizer import build_tokenizer
from vlfuse.generate import generate_ids
from vlfuse.injection.cross_attention import FusedDecoderLayer
from vlfuse.llm import LLM_TABLE, SEQ2SEQ, decoder_layers
from vlfuse.objectives.lm import label_positions

_BASE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "max_position_embeddings": 256, "tie_word_embeddings": False}
_GQA = {"num_attention_heads": 4, "num_key_value_heads": 2}
FAMILIES: dict[str, dict] = {
    "llama": {**_BASE, "model_type": "llama", "num_key_value_heads": 2},
    "smollm": {**_BASE, **_GQA, "model_type": "llama", "tie_word_embeddings": True},  # SmolLM: tied, GQA
    "mistral": {**_BASE, **_GQA, "model_type": "mistral", "sliding_window": 4},
    "qwen2": {**_BASE, "model_type": "qwen2", "num_key_value_heads": 2},
    "qwen2.5": {**_BASE, **_GQA, "model_type": "qwen2", "tie_word_embeddings": True},  # q/k/v bias, GQA, tied
    "qwen3": {**_BASE, **_GQA, "model_type": "qwen3", "head_dim": 16},  # q/k RMSNorm, head_dim * h != Dt
    "gemma": {**_BASE, "model_type": "gemma", "head_dim": 16, "num_key_value_heads": 1},  # sqrt(Dt) embedding
    "phi3": {**_BASE, "model_type": "phi3", "num_key_value_heads": 2, "sliding_window": 4, "pad_token_id": 0,
             "eos_token_id": 2},  # its defaults (32000) lie outside a small vocabulary
    "gpt2": {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256},
    "opt": {"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 256, "word_embed_proj_dim": 32},  # learned positions (offset 2)
    "opt-350m": {"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "max_position_embeddings": 256, "word_embed_proj_dim": 16,
                 "do_layer_norm_before": False},  # embeddings 16 wide, projected in / out of 32-wide layers
    "phi": {**_BASE, "model_type": "phi", "partial_rotary_factor": 0.5, "qk_layernorm": True},
    "gemma2": {**_BASE, "model_type": "gemma2", "head_dim": 16, "num_key_value_heads": 1, "sliding_window": 4,
               "query_pre_attn_scalar": 16},  # attention and final logit softcapping (50, 30), no SDPA
    "gemma3_text": {**_BASE, "model_type": "gemma3_text", "head_dim": 16, "num_key_value_heads": 1,
                    "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"],
                    "query_pre_attn_scalar": 16, "final_logit_softcapping": 30.0},
    "persimmon": {**_BASE, "model_type": "persimmon", "partial_rotary_factor": 0.5},  # q/k LayerNorm, relu^2
}
PROMPTS = ["what color is the circle ? is the square left of the circle ?", "yes and no ?"]
IMAGE_PROMPTS = ["<image> what color is <image> the circle left of the square ?", "is the <image> red ?"]
FLAMINGO = {"kind": "cross_attention", "every": 1}
NEW = 8  # generated tokens


def saved_llm(family: str, folder) -> str:
    """The family's tiny random LLM, vocabulary sized to the test tokenizer, saved as transformers saves it."""
    config = dict(FAMILIES[family])
    hf = AutoConfig.for_model(config.pop("model_type"), vocab_size=len(build_tokenizer(WORDS)), **config)
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(hf).save_pretrained(str(folder))
    return str(folder)


def reference(folder: str):
    """The same weights, run by ``transformers`` alone."""
    return AutoModelForCausalLM.from_pretrained(folder).eval()


def vlm(folder: str, injection: dict | None = None):
    return tiny_vlm(llm={"path": folder}, injection=injection or {"kind": "concat"}).eval()


def images(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 8, 8, generator=g) for _ in range(n)]


def image_batch(model):
    return model.processor()(text=IMAGE_PROMPTS, images=[images(2), images(1, seed=1)], padding_side="left")


def reference_logits(ref, batch) -> torch.Tensor:
    """``(B, S, W)`` from the reference, with the positions ``transformers.generate`` gives a left-padded batch."""
    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # (B, S)
    with torch.no_grad():
        return ref(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions).logits


def assert_real_positions_equal(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor) -> None:
    """Logits ``(B, S, W)`` are equal, bit for bit, at every non-padding position (padding rows are never read)."""
    real = mask.bool()
    assert torch.equal(got[real], want[real])


def conversation_batch(model):
    """Two right-padded training records with images and answers (``labels`` set on the answers)."""
    proc = model.processor()
    conv = [{"from": "human", "value": "<image>\nwhat color is the circle ?"}, {"from": "gpt", "value": "red"},
            {"from": "human", "value": "<image> is the square left of the circle ?"}, {"from": "gpt", "value": "no"}]
    short = [{"from": "human", "value": "<image>\nwhat ?"}, {"from": "gpt", "value": "blue and red"}]
    records = [{"id": "a", "images": images(2), "conversations": conv},
               {"id": "b", "images": images(1, seed=1), "conversations": short}]
    return proc.collate([proc.encode(r) for r in records])


def test_every_table_family_is_tested_here():
    # encoder-decoder families run only under encoder_prefix: tests/unit/test_encoder_prefix.py, parity/test_blip2_t5.py
    assert {config["model_type"] for config in FAMILIES.values()} == set(LLM_TABLE) - SEQ2SEQ


@pytest.mark.parametrize("family", list(FAMILIES))
def test_concat_on_text_is_the_llm_and_generates_its_greedy_ids(family, tmp_path):
    folder = saved_llm(family, tmp_path / "llm")
    model, ref = vlm(folder), reference(folder)
    batch = model.processor()(text=PROMPTS, padding_side="left")
    with torch.no_grad():
        got = model(**batch).logits  # (B, S, W)
    assert_real_positions_equal(got, reference_logits(ref, batch), batch["attention_mask"])
    image_id = model.injector.image_token_id  # never generated (a decode step has no image for it)
    ours = generate_ids(model, batch, max_new_tokens=NEW, eos_token_id=-1)  # (B, G)
    settings = GenerationConfig(max_new_tokens=NEW, do_sample=False, suppress_tokens=[image_id], eos_token_id=None,
                                pad_token_id=0)
    theirs = ref.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          generation_config=settings)[:, batch["input_ids"].shape[1]:]
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_config_route_builds_the_same_llm(family, tmp_path):
    folder = saved_llm(family, tmp_path / "llm")
    ref = reference(folder)
    config = {**FAMILIES[family], "vocab_size": ref.config.vocab_size}
    model = tiny_vlm(llm={"config": config}).eval()  # the dict itself, checked by check_hf_config
    model.llm.load_state_dict(ref.state_dict())
    assert model.llm.config._attn_implementation == ref.config._attn_implementation
    batch = model.processor()(text=PROMPTS, padding_side="left")
    with torch.no_grad():
        got = model(**batch).logits
    assert_real_positions_equal(got, reference_logits(ref, batch), batch["attention_mask"])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_concat_with_images_trains_one_step(family, tmp_path):
    model = vlm(saved_llm(family, tmp_path / "llm"))
    batch = conversation_batch(model)
    with torch.no_grad():
        before = model(**batch).loss
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.connector.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # the loss reaches the visual tokens
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    model.eval()
    with torch.no_grad():
        assert model(**batch).loss < before


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cross_attention_wraps_every_layer_and_shut_gates_are_the_llm(family, tmp_path):
    folder = saved_llm(family, tmp_path / "llm")
    model, ref = vlm(folder, FLAMINGO), reference(folder)
    layers = decoder_layers(model.llm)
    assert len(layers) == ref.config.num_hidden_layers
    assert all(isinstance(layer, FusedDecoderLayer) for layer in layers)
    assert list(model.llm.state_dict()) == list(ref.state_dict())  # the wrapped layers keep their keys
    batch = image_batch(model)
    with torch.no_grad():
        got = model(**batch).logits  # (B, S, W)
    want = reference_logits(ref, batch)  # the LLM reads the <image> markers as plain tokens
    assert_real_positions_equal(got, want, batch["attention_mask"])
    with torch.no_grad():
        for block in model.injector.blocks:
            block.attn_gate.fill_(0.8)
            block.ff_gate.fill_(0.8)
        opened = model(**batch).logits
    assert (opened - want)[batch["attention_mask"].bool()].abs().amax() > 1e-2  # the blocks now act


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cross_attention_generation_with_the_cache_equals_recomputation(family, tmp_path):
    model = vlm(saved_llm(family, tmp_path / "llm"), {**FLAMINGO, "gate_init": 0.8})
    batch = image_batch(model)
    cached = generate_ids(model, batch, max_new_tokens=NEW, eos_token_id=-1)  # (B, G)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    recomputed = []
    for _ in range(NEW):  # every step from scratch: the whole sequence, no cache
        with torch.no_grad():
            logits = model(ids, attention_mask=mask, pixel_values=batch["pixel_values"],
                           image_counts=batch["image_counts"]).logits[:, -1]  # (B, W)
        logits[:, model.injector.image_token_id] = float("-inf")
        nxt = logits.argmax(-1)  # (B,)
        recomputed.append(nxt)
        ids, mask = torch.cat([ids, nxt[:, None]], 1), torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
    assert cached.tolist() == torch.stack(recomputed, 1).tolist()


@pytest.mark.parametrize("design", ["concat", "cross_attention"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_label_logits_only_gives_the_same_loss(family, design, tmp_path):
    injection = {**FLAMINGO, "gate_init": 0.5} if design == "cross_attention" else None
    model = vlm(saved_llm(family, tmp_path / "llm"), injection)  # eval: no dropout between the two runs
    batch = conversation_batch(model)
    with torch.no_grad():
        full = model(**batch)
        kept = model(**batch, label_logits_only=True)
    keep = label_positions(batch["labels"])  # (B, S)
    assert kept.logits.shape == (int(keep.sum()), full.logits.shape[-1])
    torch.testing.assert_close(kept.logits, full.logits[keep], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kept.loss, full.loss, rtol=1e-6, atol=1e-6)


def test_gemma2_runs_eager_where_transformers_has_no_sdpa_path(tmp_path):
    model = vlm(saved_llm("gemma2", tmp_path / "llm"))
    assert model.config.llm.attn_implementation == "sdpa"  # the default asks for SDPA; Gemma 2 has none
    assert model.llm.config._attn_implementation == "eager"
    assert tiny_vlm(llm={"config": FAMILIES["llama"]}).llm.config._attn_implementation == "sdpa"


def test_a_family_outside_the_table_is_refused_naming_the_table(tmp_path):
    hf = AutoConfig.for_model("bloom", hidden_size=32, n_layer=1, n_head=2, vocab_size=len(build_tokenizer(WORDS)))
    AutoModelForCausalLM.from_config(hf).save_pretrained(str(tmp_path / "bloom"))
    with pytest.raises(ValueError, match=r"'bloom' is not in vlfuse.llm.LLM_TABLE \(llama, .*add a row"):
        vlm(str(tmp_path / "bloom"))
