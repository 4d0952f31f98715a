"""An instruction Q-Former built from a vlfuse config: without a tokenizer of its own it reads the VLM's ids."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_vlm
from vlfuse import VLM
from vlfuse.connectors.qformer import QFormerConfig
from vlfuse.generate import generate_ids


def _model():
    qformer = {"kind": "qformer", "hidden_size": 32, "layers": 2, "heads": 2, "intermediate_size": 48,
               "num_queries": 4, "vocab_size": 400, "max_text_positions": 32, "instruction": True}
    return tiny_vlm(connector=qformer).eval()


def test_the_processor_gives_right_padded_instruction_ids_and_generation_reads_them(tmp_path):
    model = _model()
    assert model.input_names == ("qformer_input_ids", "qformer_attention_mask") and model.connector.heads is None
    texts = ["<image> what color is the circle ?", "<image> yes ?"]
    groups = [[torch.rand(3, 8, 8)], [torch.rand(3, 8, 8)]]
    batch = model.processor()(text=texts, images=groups, padding_side="left")
    for row, mask, text in zip(batch["qformer_input_ids"], batch["qformer_attention_mask"], texts):
        ids = model.tokenizer(text).input_ids
        assert row[: len(ids)].tolist() == ids and mask.tolist() == [1] * len(ids) + [0] * (len(row) - len(ids))
    new = generate_ids(model, batch, max_new_tokens=4, eos_token_id=-1)
    model.save_pretrained(str(tmp_path / "m"))
    again = VLM.from_pretrained(str(tmp_path / "m")).eval()
    assert again.qformer_tokenizer is None
    batch = again.processor()(text=texts, images=groups, padding_side="left")
    assert generate_ids(again, batch, max_new_tokens=4, eos_token_id=-1).tolist() == new.tolist()


def test_an_instruction_qformer_needs_a_text_path():
    with pytest.raises(ValueError, match="instruction=True reads the prompt"):
        QFormerConfig(instruction=True)
