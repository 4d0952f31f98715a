"""InstructBLIP (``transformers.InstructBlipForConditionalGeneration``) -> vlfuse: BLIP-2 whose Q-Former reads the
instruction.

Dai et al., 2023 (arXiv:2305.06500). The layout is BLIP-2's (``vlfuse.convert.blip2``) but for the Q-Former's text
embeddings and the LayerNorm after them, which live under ``qformer.embeddings``; they are renamed to BLIP-2's keys
and the same loader builds a ``qformer`` connector with ``instruction=True`` (no stage-1 heads). The Q-Former's own
tokenizer (BERT's) is read from the ``qformer_tokenizer`` folder ``InstructBlipProcessor.save_pretrained`` writes.
Parity: ``tests/parity/test_instructblip.py``. Shapes: only weights move here.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PretrainedConfig

from vlfuse.convert.blip2 import convert_blip2_family
from vlfuse.convert.common import Converted, converter, require
from vlfuse.data.instruction import QFORMER_TOKENIZER, load_qformer_tokenizer
from vlfuse.loading import read_safetensors

# InstructBLIP prefix -> BLIP-2 prefix (what vlfuse.convert.blip2.load_blip2_qformer reads)
_EMBEDDINGS = (("qformer.embeddings.layernorm.", "qformer.layernorm."),
               ("qformer.embeddings.word_embeddings.", "embeddings.word_embeddings."),
               ("qformer.embeddings.position_embeddings.", "embeddings.position_embeddings."))


@converter("instructblip")
def convert_instructblip(directory: Path, hf: PretrainedConfig) -> Converted:
    """``InstructBlipForConditionalGeneration`` (decoder-only LLM: Vicuna, OPT, ...) -> ViT -> instruction
    Q-Former -> linear -> concat -> LM; the processor also gives ``qformer_input_ids`` / ``qformer_attention_mask``."""
    qformer_tok = load_qformer_tokenizer(directory)
    require(qformer_tok is not None,
            f"{str(directory)!r} has no {QFORMER_TOKENIZER}/ folder; InstructBLIP's Q-Former reads the prompt in its "
            "own tokenizer's ids: save the InstructBlipProcessor (it writes that folder) into the model folder")
    state = read_safetensors(directory)
    for key in list(state):
        for src, dst in _EMBEDDINGS:
            if key.startswith(src):
                state[dst + key[len(src):]] = state.pop(key)
    out = convert_blip2_family(directory, hf, state, instruction=True)
    out.qformer_tokenizer = qformer_tok
    return out
