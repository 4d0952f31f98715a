"""``vlfuse params``: exact parameter counts of every registered connector and injection at the given widths.

Every design is built as the model would build it (``cls(config, in_dim=Dv, out_dim=Dt)``; an injection around
an LLM of width ``Dt``) on the ``meta`` device, which records shapes and allocates nothing, so a 4096-wide LLM
costs no memory; the count is the sum of ``numel`` over the module's own parameters (the LLM's are not counted).
Shapes: ``Dv`` vision width, ``Dt`` LLM width, ``P`` patches per image, ``V`` visual tokens per image.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

# flag -> the config field it sets, in every connector whose config has that field (no per-design branches)
FLAG_FIELDS = {"latents": "n_latents", "queries": "num_queries", "grid": "grid", "ratio": "ratio"}
INJECTION_FLAGS = {"every": "every"}  # the same, for injections


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="exact parameter counts of every connector and injection", description=__doc__)
    p.add_argument("--vision-dim", type=int, default=1024, help="Dv, the vision width (default 1024: CLIP ViT-L/14)")
    p.add_argument("--llm-dim", type=int, default=4096, help="Dt, the LLM width (default 4096: a 7B Llama)")
    p.add_argument("--llm-layers", type=int, default=32, help="LLM decoder layers, for injections (default 32)")
    p.add_argument("--patches", type=int, default=576, help="P, patches per image, for the V column (default 576)")
    p.add_argument("--latents", type=int, default=64, help="latents of the perceiver (n_latents; default 64)")
    p.add_argument("--queries", type=int, default=32, help="learned queries of connectors with num_queries (Q-Former)")
    p.add_argument("--grid", type=int, help="output grid side of avgpool / cabstractor (default: each one's own)")
    p.add_argument("--ratio", type=int, default=2, help="pixel-shuffle ratio r (default 2)")
    p.add_argument("--every", type=int, help="cross_attention: a block before every k-th LLM layer (default 1)")
    p.add_argument("--json", action="store_true", help='print {"connectors": {...}, "injections": {...}, ...}')
    p.set_defaults(func=run)


def count(module: Any) -> int:
    """Parameters of ``module`` (shared tensors once)."""
    return sum(p.numel() for p in module.parameters())


def connector_config(name: str, args: argparse.Namespace) -> Any:
    """The default config of connector ``name`` with the flags that apply to it."""
    from vlfuse.config import from_dict
    from vlfuse.registry import CONNECTORS

    entry = CONNECTORS.get(name)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    data: dict[str, Any] = {"kind": name}
    for flag, field in FLAG_FIELDS.items():
        if field in fields and getattr(args, flag, None) is not None:
            data[field] = getattr(args, flag)
    return from_dict(entry.config_cls, data, f"connector {name}")


def connector_counts(args: argparse.Namespace) -> tuple[dict[str, int], dict[str, int | None]]:
    """``({name: parameters}, {name: V at P patches, or None where P does not fit the design})``."""
    import torch

    import vlfuse.connectors  # noqa: F401  (fill the registry)
    from vlfuse.registry import CONNECTORS

    params: dict[str, int] = {}
    tokens: dict[str, int | None] = {}
    for name in CONNECTORS.names():
        config = connector_config(name, args)
        with torch.device("meta"):
            module = CONNECTORS.build(config, in_dim=args.vision_dim, out_dim=args.llm_dim)
        params[name] = count(module)
        try:
            tokens[name] = module.num_tokens(args.patches)
        except ValueError:  # e.g. a shuffle ratio that does not divide the grid
            tokens[name] = None
    return params, tokens


def injection_counts(args: argparse.Namespace) -> dict[str, int]:
    """``{name: parameters}`` of every injection around a meta Llama of width ``Dt`` (its weights not counted);
    an encoder-decoder injection (``encoder_prefix``) around a meta T5 of that width and depth.

    ``cross_attention`` counts its blocks (attention, FFW of ``4 * Dt``, norms, gates) at the LLM's heads.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, LlamaConfig, T5Config

    import vlfuse.injection  # noqa: F401  (fill the registry)
    from vlfuse.config import from_dict
    from vlfuse.registry import INJECTIONS

    heads = 32 if args.llm_dim % 32 == 0 else 1
    hf = LlamaConfig(hidden_size=args.llm_dim, intermediate_size=4 * args.llm_dim, num_hidden_layers=args.llm_layers,
                     num_attention_heads=heads, num_key_value_heads=heads, vocab_size=32000)
    t5 = T5Config(d_model=args.llm_dim, d_kv=args.llm_dim // heads, num_heads=heads, d_ff=4 * args.llm_dim,
                  num_layers=args.llm_layers, vocab_size=32000)
    out = {}
    for name in INJECTIONS.names():
        entry = INJECTIONS.get(name)
        data: dict[str, Any] = {"kind": name}
        for flag, field in INJECTION_FLAGS.items():
            if field in {f.name for f in dataclasses.fields(entry.config_cls)} and getattr(args, flag, None):
                data[field] = getattr(args, flag)
        with torch.device("meta"):
            # a fresh one each: cross-attention wraps its layers
            auto, llm_config = (AutoModelForSeq2SeqLM, t5) if entry.cls.encoder_decoder else (AutoModelForCausalLM, hf)
            llm = auto.from_config(llm_config)
            out[name] = count(entry.cls(from_dict(entry.config_cls, data, f"injection {name}"), llm))
    return out


def run(args: argparse.Namespace) -> int:
    for flag in ("vision_dim", "llm_dim", "llm_layers", "patches"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')}={getattr(args, flag)} must be >= 1")
    if args.every is not None and args.every < 1:
        raise ValueError(f"--every={args.every} must be >= 1 (1: a block before every LLM layer)")
    params, tokens = connector_counts(args)
    injections = injection_counts(args)
    if args.json:
        print(json.dumps({"connectors": params, "injections": injections, "visual_tokens": tokens}, indent=2))
        return 0
    print(f"connectors  Dv {args.vision_dim} -> Dt {args.llm_dim}, V at P = {args.patches} patches")
    for name, n in params.items():
        v = tokens[name]
        print(f"  {name:<14} {n:>15,}   V = {'-' if v is None else v}")
    print(f"injections  around a {args.llm_layers}-layer LLM of width {args.llm_dim} (its own weights not counted)")
    for name, n in injections.items():
        print(f"  {name:<14} {n:>15,}")
    return 0
