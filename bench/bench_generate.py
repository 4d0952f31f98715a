"""Generation speed: vlfuse's KV-cached decode (images encoded once) against re-running the full sequence.

Prints tokens/s for both and their ratio, measured in the same run on the same model, so the number is
meaningful on any machine. Run: ``.venv/bin/python bench/bench_generate.py [--new-tokens 32] [--batch 8]``.
Shapes: ``B`` batch, ``S`` prompt length, ``G`` generated tokens.
"""

from __future__ import annotations

import argparse
import time

import torch

from vlfuse.data.scenes import ScenesConfig, generate
from vlfuse.generate import generate_ids
from vlfuse.model import VLM, VLMConfig


@torch.no_grad()
def full_forward_greedy(model: VLM, batch: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """The reference: every step re-encodes the images and re-runs the whole sequence (no cache)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    out = []
    for _ in range(steps):
        logits = model(ids, attention_mask=mask, pixel_values=batch["pixel_values"],
                       image_counts=batch["image_counts"]).logits[:, -1]  # (B, W)
        logits[:, model.injector.image_token_id] = float("-inf")
        nxt = logits.argmax(-1)  # (B,)
        out.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)  # (B, S + 1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
    return torch.stack(out, 1)  # (B, G)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = VLM.from_config(VLMConfig()).eval()
    proc = model.processor()
    records = generate(ScenesConfig(skills={"caption": 1.0}), args.batch, seed=0)
    examples = [proc.encode_prompt(r["conversations"][0]["value"], [r["image"]]) for r in records]
    batch = proc.collate(examples, "left")
    never = -1  # no EOS: both paths generate exactly --new-tokens tokens

    def timed(fn) -> tuple[float, torch.Tensor]:
        best, result = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t0)
        return best, result

    t_cache, cached = timed(lambda: generate_ids(model, batch, args.new_tokens, eos_token_id=never))
    t_full, full = timed(lambda: full_forward_greedy(model, batch, args.new_tokens))
    tokens = args.batch * args.new_tokens
    print(f"prompt {batch['input_ids'].shape[1]} tokens ({model.visual_tokens} visual), batch {args.batch}, "
          f"{args.new_tokens} new tokens, torch threads {torch.get_num_threads()}")
    print(f"kv-cached  : {tokens / t_cache:8.0f} tokens/s")
    print(f"full recompute: {tokens / t_full:8.0f} tokens/s")
    print(f"speed-up   : {t_full / t_cache:.2f}x   same tokens: {torch.equal(cached, full)}")


if __name__ == "__main__":
    main()
