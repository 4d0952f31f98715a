"""Decode time per token and KV-cache bytes for 1, 2, 4, 8, 16 images: concatenation vs cross-attention.

Two VLMs share the vision encoder, the connector (so the same ``V`` visual tokens per image) and the LLM config;
one concatenates the visual tokens into the sequence (LLaVA), the other reads them through gated cross-attention
blocks (``every`` k-th layer, ``media: last``: a generated token reads the last image, whose K/V alone stay cached).
Every figure is measured in the same run with ``vlfuse.compare.measure.latency`` (median of ``--repeats`` after a
warm-up; the argmax token fed back for ``--new-tokens`` steps, never stopping at EOS), the two designs alternating
for each image count, and the table gives their ratios.

Run (tiny CPU config, the ``vlfuse compare --quick`` backbones)::

    PYTHONPATH=src .venv/bin/python bench/decode_vs_images.py

A bigger LLM: ``--llm PATH`` (a local ``AutoModelForCausalLM`` folder, its weights loaded) or ``--llm-config
JSON`` (a transformers config, random weights), with ``--device cuda --dtype bfloat16``; more visual tokens per
image: ``--image-size 192`` (576 tokens, LLaVA-1.5's count). ``bench/gpu_xattn.sh`` runs it on a GPU, beside the
``transformers`` reference (``bench/reference_xattn.py``).
Shapes: ``N`` images, ``V`` visual tokens per image, ``S`` prompt length.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from vlfuse.compare.measure import latency
from vlfuse.config import from_dict
from vlfuse.model import VLM, VLMConfig

ENCODER = {"kind": "vit", "width": 128, "depth": 3, "heads": 4}  # 40 px / patch 8 by default: V = 25
TINY_LLM = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 1024,
            "tie_word_embeddings": False}


def build(injection: dict[str, Any], args: argparse.Namespace) -> VLM:
    llm: dict[str, Any] = {"dtype": args.dtype}
    if args.llm:
        llm["path"] = args.llm
    else:
        llm["config"] = json.loads(args.llm_config) if args.llm_config else dict(TINY_LLM)
    encoder = {**ENCODER, "image_size": args.image_size, "patch_size": args.patch_size}
    config = from_dict(VLMConfig, {"encoder": encoder, "connector": {"kind": "linear"}, "injection": injection,
                                   "llm": llm})
    torch.manual_seed(0)
    model = VLM.from_config(config).to(args.device).eval()
    if args.dtype != "float32":
        model.to(getattr(torch, args.dtype))
    return model


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="1,2,4,8,16", help="image counts (default 1,2,4,8,16)")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--every", type=int, default=1, help="cross-attention block before every k-th layer")
    p.add_argument("--image-size", type=int, default=40, help="ViT input size (V = (size / patch)^2 tokens)")
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--llm", help="local AutoModelForCausalLM folder (weights loaded)")
    p.add_argument("--llm-config", help="a transformers LLM config as JSON (random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    counts = [int(n) for n in args.images.split(",")]
    concat = build({"kind": "concat"}, args)
    xattn = build({"kind": "cross_attention", "every": args.every, "media": "last"}, args)
    rows = []
    for n in counts:
        c = latency(concat, n, new_tokens=args.new_tokens, repeats=args.repeats)
        x = latency(xattn, n, new_tokens=args.new_tokens, repeats=args.repeats)
        rows.append((n, c, x))
    llm = concat.llm.config
    print(f"LLM {llm.model_type} width {llm.hidden_size}, {llm.num_hidden_layers} layers; V = {concat.visual_tokens} "
          f"visual tokens per image; cross-attention before every {args.every} layer(s) "
          f"({len(xattn.injector.blocks)} blocks); {args.new_tokens} new tokens, median of {args.repeats}; "
          f"device {args.device}, {args.dtype}, torch threads {torch.get_num_threads()}\n")
    print("| images | prompt concat / xattn | decode ms/token concat | xattn | concat / xattn | "
          "KV cache concat | xattn (self + visual) | concat / xattn |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, c, x in rows:
        print(f"| {n} | {c['prompt_tokens']} / {x['prompt_tokens']} | {c['decode_ms_per_token']:.2f} | "
              f"{x['decode_ms_per_token']:.2f} | {c['decode_ms_per_token'] / x['decode_ms_per_token']:.2f}x | "
              f"{human(c['kv_bytes'])} | {human(x['kv_bytes'])} ({human(x['kv_self_attn_bytes'])} + "
              f"{human(x['kv_visual_bytes'])}) | {c['kv_bytes'] / x['kv_bytes']:.2f}x |")
    (n0, c0, x0), (n1, c1, x1) = rows[0], rows[-1]
    print(f"growth {n0} -> {n1} images: decode concat {c1['decode_ms_per_token'] / c0['decode_ms_per_token']:.2f}x, "
          f"xattn {x1['decode_ms_per_token'] / x0['decode_ms_per_token']:.2f}x; KV concat "
          f"{c1['kv_bytes'] / c0['kv_bytes']:.2f}x, xattn {x1['kv_bytes'] / x0['kv_bytes']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
