"""The instruction a Q-Former reads (InstructBLIP): each prompt in the Q-Former's own vocabulary, right-padded.

InstructBLIP (Dai et al., 2023, arXiv:2305.06500) feeds the prompt to the Q-Former as well as to the LLM, tokenized
by the Q-Former's BERT tokenizer, which ``InstructBlipProcessor.save_pretrained`` writes to the ``qformer_tokenizer``
folder next to the LLM's tokenizer. ``Processor`` calls ``InstructionText`` on the raw prompts and adds its keys to
the batch. The Q-Former numbers text positions from 0 whatever the mask says, so the instruction is always padded
on the right (a left pad would shift every real token's position), whichever side the LLM's ids are padded on.
Shapes: ``B`` prompts, ``T`` longest instruction in tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from vlfuse.connectors.qformer import INSTRUCTION_INPUTS
from vlfuse.hub import NO_REMOTE_CODE, check_folder

QFORMER_TOKENIZER = "qformer_tokenizer"  # the folder transformers' InstructBlipProcessor saves it in


class InstructionText:
    """Prompts -> ``qformer_input_ids, qformer_attention_mask (B, T)``, with the tokenizer's specials, right-padded.

    Args:
        tokenizer: the Q-Former's tokenizer (BERT's in the released InstructBLIP models).
        max_length: the Q-Former's text positions; a longer instruction raises here, before any forward pass.

    Example:
        >>> InstructionText(bert, 512)(["what is it ?", "colour ?"])["qformer_input_ids"].shape
        torch.Size([2, 6])
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("the Q-Former's tokenizer has no pad token; save one with it (BERT's is [PAD])")
        self.tok, self.max_length = tokenizer, max_length

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = [self.tok(t).input_ids for t in texts]  # [CLS] ... [SEP], as InstructBlipProcessor tokenizes
        longest = max(len(r) for r in rows)
        if longest > self.max_length:
            raise ValueError(f"an instruction of {longest} Q-Former tokens exceeds its {self.max_length} text "
                             "positions; shorten the prompt")
        ids = torch.full((len(rows), longest), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)  # right padding: positions 0..len-1 are the real tokens
            mask[i, : len(r)] = 1
        return dict(zip(INSTRUCTION_INPUTS, (ids, mask)))


def load_qformer_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase | None:
    """The tokenizer in ``directory/qformer_tokenizer`` (no code from the folder runs), or None when there is none."""
    folder = Path(directory) / QFORMER_TOKENIZER
    if not folder.is_dir():
        return None
    check_folder(folder, "Q-Former tokenizer folder")
    return AutoTokenizer.from_pretrained(str(folder), **NO_REMOTE_CODE)
