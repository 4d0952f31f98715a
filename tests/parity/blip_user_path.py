"""Shared by the BLIP-2 and InstructBLIP parity tests: tiny tokenizers and the user-path comparison.

``check_user_path`` runs one batch of raw prompts through transformers' processor, model and ``generate`` and
through ``VLM.from_transformers(folder)``, ``model.processor()`` and ``generate_ids``, and compares them.
"""

from __future__ import annotations

import torch
from PIL import Image
from tokenizers import processors
from transformers import BertTokenizer

from tests.conftest import WORDS
from vlfuse.data.tokenizer import build_tokenizer
from vlfuse.generate import generate_ids

PROMPTS = ["what color is the circle ?", "is the square left of the red circle ? yes or no", "a ?"]


def bos_tokenizer(pad_is_unk: bool = False):
    """The built-in BPE over ``WORDS`` adding BOS as Llama's / OPT's tokenizers do; Vicuna pads with ``<unk>``."""
    tok = build_tokenizer(WORDS)
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    if pad_is_unk:
        tok.pad_token = tok.unk_token
    return tok


def bert_tokenizer(folder):
    """A tiny lower-casing WordPiece tokenizer in BERT's layout ([PAD] 0, [CLS], [SEP]), as InstructBLIP's."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizer(vocab=str(vocab))


def images(n: int) -> list[Image.Image]:
    """``n`` random RGB images, one of them not square (the processors stretch it to 8 x 8)."""
    g = torch.Generator().manual_seed(n)
    sizes = [(8, 8), (12, 9), (8, 8)]
    return [Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy())
            for w, h in sizes[:n]]


def _real(rows: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [r[m.bool()] for r, m in zip(rows, mask)]


def check_user_path(ours, hf, hf_proc, side: str, n: int) -> None:
    """Ids, logits at every real position (fp32, 1e-5) and, left-padded, 16 greedy tokens equal transformers' for
    ``n`` prompts (of different lengths, one image each)."""
    texts, imgs = PROMPTS[:n], images(n)
    batch = ours.processor()(text=texts, images=[[im] for im in imgs], padding_side=side)
    ref = hf_proc(text=texts, images=imgs, padding=True, padding_side=side, return_tensors="pt")
    ref = dict(ref)
    if "qformer_input_ids" in ref:  # the Q-Former's text is right-padded whatever side the LLM's is
        right = hf_proc(text=texts, images=imgs, padding=True, padding_side="right", return_tensors="pt")
        ref["qformer_input_ids"], ref["qformer_attention_mask"] = right["qformer_input_ids"], right[
            "qformer_attention_mask"]
        assert torch.equal(batch["qformer_input_ids"], ref["qformer_input_ids"])
        assert torch.equal(batch["qformer_attention_mask"], ref["qformer_attention_mask"])
    for got_row, ref_row in zip(_real(batch["input_ids"], batch["attention_mask"]),
                                _real(ref["input_ids"], ref["attention_mask"])):
        assert got_row.tolist() == ref_row.tolist()
    torch.testing.assert_close(batch["pixel_values"], ref["pixel_values"], atol=1e-6, rtol=0)
    position_ids = (ref["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # as transformers' generate numbers them
    with torch.no_grad():
        want = hf(**ref, position_ids=position_ids).logits
        got = ours(**batch).logits
    for g, w in zip(_real(got, batch["attention_mask"]), _real(want, ref["attention_mask"])):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    if side == "right":
        return  # generation continues a left-padded batch (on the right, new tokens would follow the padding)
    # no EOS on either side, so all 16 tokens are compared; vlfuse never generates the image token, so neither may HF
    new = generate_ids(ours, batch, max_new_tokens=16, eos_token_id=-1)
    for config in (hf.generation_config, hf.language_model.generation_config):
        config.eos_token_id = None
    with torch.no_grad():
        out = hf.generate(**ref, max_new_tokens=16, do_sample=False, suppress_tokens=[ours.injector.image_token_id])
    assert new.tolist() == out[:, -16:].tolist()
