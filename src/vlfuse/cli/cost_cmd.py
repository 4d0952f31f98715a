"""``vlfuse cost``: parameters added, prefill / decode FLOPs and KV-cache bytes of each fusion design.

The LLM is a preset (``--llm llama-3-8b``) or explicit dims
(``--llm-dims layers=32,hidden=4096,heads=32,kv_heads=8,ffn=14336,vocab=128256``); the vision encoder likewise
(``--vision clip-vit-l-336`` or ``--vision-dims layers=24,hidden=1024,heads=16,ffn=4096,patch=14,image=336``).
The formulas are in ``vlfuse/budget/cost.py``.
Units: parameters in elements, FLOPs (shown as TFLOPs / GFLOPs), KV cache in bytes (shown as MiB).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from vlfuse.cli.common import out_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    from vlfuse.budget.cost import BYTES, DESIGNS
    from vlfuse.budget.dims import LLM_PRESETS, VISION_PRESETS

    p = sub.add_parser("cost", help="parameters, FLOPs and KV cache of each fusion design", description=__doc__)
    p.add_argument("--design", action="append", default=[], metavar="NAME",
                   help=f"one of {', '.join(DESIGNS)}; repeat or comma-separate (default: all)")
    p.add_argument("--llm", help=f"LLM preset: {', '.join(LLM_PRESETS)} (default llama-3-8b)")
    p.add_argument("--llm-dims", help="explicit LLM dims: layers=,hidden=,heads=,kv_heads=,ffn=,vocab=[,head_dim=]")
    p.add_argument("--vision", help=f"vision preset: {', '.join(VISION_PRESETS)} (default clip-vit-l-336)")
    p.add_argument("--vision-dims", help="explicit ViT dims: layers=,hidden=,heads=,ffn=,patch=,image=[,cls=]")
    p.add_argument("--images", type=int, default=1, help="images in the prompt (N)")
    p.add_argument("--text-tokens", type=int, default=128, help="prompt text tokens (T)")
    p.add_argument("--new-tokens", type=int, default=128, help="generated tokens (G)")
    p.add_argument("--dtype", default="bf16", choices=sorted(BYTES), help="KV-cache element type")
    p.add_argument("--xattn-every", type=int, default=4, help="xattn: one cross-attention block per K LLM layers")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE", help="also draw cost against the number of images (PNG)")
    p.set_defaults(func=run)


def _names(raw: list[str]) -> list[str]:
    from vlfuse.budget.cost import DESIGNS

    names = [n.strip() for item in raw for n in item.split(",") if n.strip()]
    return names or list(DESIGNS)


def run(args: argparse.Namespace) -> int:
    from vlfuse.budget.cost import Workload, estimate_cost
    from vlfuse.budget.dims import LLM_PRESETS, VISION_PRESETS, FusionDims, LLMDims, VisionDims, pick

    llm = pick(args.llm, args.llm_dims, LLM_PRESETS, LLMDims, "--llm-dims", "llama-3-8b")
    vision = pick(args.vision, args.vision_dims, VISION_PRESETS, VisionDims, "--vision-dims", "clip-vit-l-336")
    fusion = FusionDims(xattn_every=args.xattn_every)
    work = Workload(args.images, args.text_tokens, args.new_tokens, args.dtype)
    names = _names(args.design)
    if "xattn" in names and args.xattn_every > llm.layers:
        raise ValueError(f"--xattn-every {args.xattn_every} exceeds the LLM's {llm.layers} layers; "
                         f"use at most {llm.layers}")
    if args.plot:
        if Path(args.plot).is_dir():
            raise ValueError(f"--plot {args.plot!r} is a folder; pass a PNG file path such as {args.plot}/cost.png")
        out_dir(str(Path(args.plot).parent), "--plot's folder")
    costs = estimate_cost(names, llm, vision, fusion, work)
    plot = None
    if args.plot:
        from vlfuse.budget.plot import plot_cost

        plot = str(plot_cost(args.plot, names, llm, vision, fusion, work))
    if args.json:
        print(json.dumps({"llm": asdict(llm), "vision": asdict(vision), "fusion": asdict(fusion),
                          "workload": asdict(work), "designs": {c.design: asdict(c) for c in costs}, "plot": plot},
                         indent=2))
    else:
        print(render(costs, work))
        if plot:
            print(f"plot: {plot}")
    return 0


def render(costs: list, work) -> str:
    """One row per design: params added, LLM positions, prefill TFLOPs, decode GFLOPs/token, KV MiB."""
    head = (f"{work.images} images, {work.text_tokens} text tokens, {work.new_tokens} new tokens, KV in {work.dtype}; "
            "vision encoder apart")
    cols = f"{'design':<10} {'params added':>13} {'LLM tokens':>10} {'prefill TFLOPs':>15} " \
           f"{'decode GFLOPs/tok':>18} {'KV cache MiB':>13} {'vision TFLOPs':>14}"
    rows = [head, cols]
    for c in costs:
        decode = f"{c.decode_flops_first / 1e9:.2f}-{c.decode_flops_last / 1e9:.2f}"
        rows.append(f"{c.design:<10} {c.params_added / 1e6:>12.1f}M {c.llm_tokens:>10} "
                    f"{c.prefill_flops / 1e12:>15.3f} {decode:>18} {c.kv_cache_bytes / 2**20:>13.1f} "
                    f"{c.vision_flops / 1e12:>14.3f}")
    return "\n".join(rows)
