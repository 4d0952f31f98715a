"""Generation with the LLM's KV cache: one prefill over text and images, then one token per step.

Images are encoded once, in the prefill; decode steps feed only the new token. Greedy (``temperature=0``) or
temperature / nucleus (top-p) sampling; stops at EOS or ``max_new_tokens``; an optional callback streams text.
Shapes: ``B`` batch, ``S`` prompt length, ``G`` generated tokens, ``W`` vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from vlfuse.model import VLM


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``logits (B, W) -> next token (B,)``: argmax when ``temperature == 0``, else top-p sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, W)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass before it already reaches top_p (the top token is always kept)
        drop = (sorted_p.cumsum(dim=-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    """Refuse sampling settings that would fail (or sample garbage) inside the loop, naming the value and the fix."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: need a whole number >= 0 (--max-new-tokens)")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature={temperature}: need a finite number >= 0 (0: greedy; --temperature)")
    if not 0 < top_p <= 1:  # also refuses nan
        raise ValueError(f"top_p={top_p}: need a number in (0, 1] (1: no nucleus cut; --top-p)")


def check_positions(model: VLM, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> None:
    """Refuse a prompt that, with ``max_new_tokens`` more tokens, runs past the LLM's position limit."""
    from vlfuse.llm import max_positions

    limit = max_positions(model.llm)
    prompt = int(attention_mask.long().sum(dim=-1).max()) if attention_mask.numel() else 0  # longest row
    needed = prompt + max(max_new_tokens - 1, 0)  # the last new token is returned, never fed back
    if needed > limit:
        visual = int((input_ids == model.injector.image_token_id).sum(dim=-1).max())
        room = limit - prompt + 1
        fix = (f"use max_new_tokens <= {room} (--max-new-tokens)" if room > 0
               else "shorten the prompt or pass fewer images")
        raise ValueError(f"prompt of {prompt} tokens ({visual} of them visual) + {max_new_tokens} new tokens needs "
                         f"{needed} positions but the LLM's limit is {limit}; {fix}")


@torch.no_grad()
def generate_ids(model: VLM, batch: dict[str, torch.Tensor], max_new_tokens: int = 16, temperature: float = 0.0,
                 top_p: float = 1.0, eos_token_id: int | None = None, generator: torch.Generator | None = None,
                 on_token: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Generate from a left-padded batch (``proc(text=..., images=..., padding_side="left")`` or
    ``Processor.collate(..., padding_side="left")``); every key of ``batch`` but ``labels`` goes to the prefill.

    Returns ``(B, G)`` new token ids; after EOS a row is filled with EOS. ``on_token`` gets each step's ``(B,)``.
    The image placeholder is never generated: a decode step has no image to put in its place.
    """
    check_sampling(max_new_tokens, temperature, top_p)
    check_positions(model, batch["input_ids"], batch["attention_mask"], max_new_tokens)
    eos = model.tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    image_id = model.injector.image_token_id
    mask = batch["attention_mask"]
    out = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=True)  # every key the processor gave
    past = out.past_key_values
    position = mask.long().sum(dim=-1, keepdim=True)  # (B, 1): next position (prompt positions are 0..len-1)
    done = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)
    tokens = []
    logits = out.logits[:, -1]  # (B, W)
    for step in range(max_new_tokens):
        if image_id >= 0:
            logits[:, image_id] = float("-inf")
        nxt = sample_next(logits, temperature, top_p, generator).masked_fill(done, eos)  # (B,)
        tokens.append(nxt)
        if on_token is not None:
            on_token(nxt)
        done |= nxt == eos
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # (B, S + step + 1)
        out = model(nxt[:, None], attention_mask=mask, position_ids=position, past_key_values=past, use_cache=True)
        past, logits, position = out.past_key_values, out.logits[:, -1], position + 1
    return torch.stack(tokens, dim=1) if tokens else mask.new_zeros(mask.shape[0], 0)


def generate_text(model: VLM, prompt: str, images: list[Any], max_new_tokens: int = 32, temperature: float = 0.0,
                  top_p: float = 1.0, seed: int | None = None, stream: Callable[[str], None] | None = None) -> str:
    """Answer one prompt about ``images``; ``stream`` receives the text as it grows (new pieces only).

    The answer is the tokenizer's decode of the new tokens, stripped: the built-in byte-level BPE decodes to
    exactly the text it was trained to write ("Seven.", never "Seven ."); a local tokenizer decodes its own way.
    """
    check_sampling(max_new_tokens, temperature, top_p)
    proc = model.processor()
    device = next(model.parameters()).device
    batch = proc.collate([proc.encode_prompt(prompt, images)], "left")
    if proc.text_inputs is not None:  # an instruction Q-Former (InstructBLIP) reads the prompt too
        batch.update(proc.text_inputs([prompt]))
    batch = {k: v.to(device) for k, v in batch.items()}
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    eos = model.tokenizer.eos_token_id
    seen: list[int] = []
    shown = ""

    def on_token(tok: torch.Tensor) -> None:
        nonlocal shown
        if stream is None or int(tok[0]) == eos:
            return
        seen.append(int(tok[0]))
        text = model.tokenizer.decode(seen, skip_special_tokens=True).strip()  # as the returned text
        if text.endswith("\ufffd"):
            return  # a character's bytes are still arriving (byte-level tokens); show it once it is whole
        stream(text[len(shown):])
        shown = text

    was_training = model.training
    model.eval()
    ids = generate_ids(model, batch, max_new_tokens, temperature, top_p, eos, generator, on_token)
    model.train(was_training)
    text = model.tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    if stream is not None and len(text) > len(shown):
        stream(text[len(shown):])  # what was held back at the end (an incomplete character)
    return text
