"""Parity with transformers' InstructBLIP on the user path: ``VLM.from_transformers(folder)``, its processor (LLM
ids with the image tokens first, the Q-Former's BERT ids right-padded), logits at every real position (fp32) and
16 greedy tokens; a Vicuna-like Llama LLM with grouped-query attention and an OPT LLM, tiny random models."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    BlipImageProcessorPil,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    InstructBlipQFormerConfig,
    LlamaConfig,
    OPTConfig,
)

from tests.parity.blip_user_path import bert_tokenizer, bos_tokenizer, check_user_path, images
from tests.parity.test_qformer_parity import DV
from vlfuse import VLM
from vlfuse.generate import generate_ids


def _text_config(llm: str, tok):
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if llm == "llama":  # Vicuna's layout, with grouped-query attention: 4 query heads share 2 K/V heads
        return LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                           tie_word_embeddings=False, **ids)
    return OPTConfig(vocab_size=len(tok), hidden_size=16, num_attention_heads=2, ffn_dim=32, num_hidden_layers=2,
                     max_position_embeddings=64, **ids)


def save_instructblip(path, llm: str):
    """A tiny InstructBLIP saved as transformers saves it: model and InstructBlipProcessor (with qformer_tokenizer)."""
    tok, bert = bos_tokenizer(pad_is_unk=llm == "llama"), bert_tokenizer(path / "bert")
    qformer = InstructBlipQFormerConfig(vocab_size=len(bert), hidden_size=32, num_hidden_layers=3,
                                        num_attention_heads=4, intermediate_size=48, max_position_embeddings=24,
                                        cross_attention_frequency=2, encoder_hidden_size=DV)
    vision = {"hidden_size": DV, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 8, "patch_size": 2}
    cfg = InstructBlipConfig(vision_config=vision, qformer_config=qformer.to_dict(),
                             text_config=_text_config(llm, tok).to_dict(), num_query_tokens=6,
                             image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    hf = InstructBlipForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        hf.query_tokens.normal_()  # transformers initialises them to zero; any values must match
    hf.save_pretrained(path)
    proc = InstructBlipProcessor(BlipImageProcessorPil(size={"height": 8, "width": 8}), tok, bert, num_query_tokens=6)
    proc.save_pretrained(path)
    return hf, proc


@pytest.mark.parametrize(("llm", "side", "n"), [("llama", "left", 3), ("llama", "right", 2), ("opt", "left", 2),
                                                ("opt", "right", 3)])
def test_instructblip_user_path_matches_transformers(tmp_path, llm, side, n):
    hf, proc = save_instructblip(tmp_path, llm)
    ours = VLM.from_transformers(str(tmp_path)).eval()
    assert ours.connector.inputs == ("qformer_input_ids", "qformer_attention_mask") and ours.connector.heads is None
    check_user_path(ours, hf, proc, side, n)
    ours.save_pretrained(str(tmp_path / "vlfuse"))
    again = VLM.from_pretrained(str(tmp_path / "vlfuse")).eval()
    assert again.qformer_tokenizer.get_vocab() == ours.qformer_tokenizer.get_vocab()
    check_user_path(again, hf, proc, side, n)


def test_the_instruction_changes_what_the_queries_read(tmp_path):
    save_instructblip(tmp_path, "llama")
    ours = VLM.from_transformers(str(tmp_path)).eval()
    batch = ours.processor()(text=["what color is the circle ?"], images=[images(1)])
    other = dict(batch, qformer_input_ids=batch["qformer_input_ids"].flip(-1))
    with torch.no_grad():
        a = ours.encode_images(batch["pixel_values"], **{k: batch[k] for k in ours.input_names})
        b = ours.encode_images(batch["pixel_values"], **{k: other[k] for k in ours.input_names})
    assert a.shape == (1, 6, 32) and not torch.allclose(a, b)


def test_missing_instruction_and_qformer_tokenizer_are_clear_errors(tmp_path):
    save_instructblip(tmp_path, "opt")
    ours = VLM.from_transformers(str(tmp_path)).eval()
    batch = ours.processor()(text=["what ?", "yes ?"], images=[images(1), images(1)])
    with pytest.raises(ValueError, match="pass qformer_input_ids"):
        ours.connector(ours.encoder(batch["pixel_values"]))
    with pytest.raises(ValueError, match="one prompt per image"):
        ours.connector(ours.encoder(batch["pixel_values"]), batch["qformer_input_ids"][:1])
    for f in (tmp_path / "qformer_tokenizer").iterdir():
        f.unlink()
    (tmp_path / "qformer_tokenizer").rmdir()
    with pytest.raises(ValueError, match="no qformer_tokenizer/ folder"):
        VLM.from_transformers(str(tmp_path))


def test_a_qformer_tokenizer_that_asks_to_run_code_is_refused(tmp_path):
    save_instructblip(tmp_path, "opt")
    path = tmp_path / "qformer_tokenizer" / "tokenizer_config.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}))
    with pytest.raises(ValueError, match="never runs code"):
        VLM.from_transformers(str(tmp_path))


def test_model_generate_reads_the_instruction_and_puts_the_image_first(tmp_path):
    save_instructblip(tmp_path, "llama")
    ours = VLM.from_transformers(str(tmp_path)).eval()
    proc, image = ours.processor(), images(1)
    example = proc.encode_prompt("what color ?", image)
    assert example.input_ids[:6] == [ours.injector.image_token_id] * 6
    assert example.input_ids[6] == ours.tokenizer.bos_token_id
    batch = proc.collate([example], "left")
    batch.update(proc.text_inputs(["what color ?"]))
    want = ours.tokenizer.decode(generate_ids(ours, batch, max_new_tokens=5)[0], skip_special_tokens=True).strip()
    assert ours.generate("what color ?", image, max_new_tokens=5) == want
