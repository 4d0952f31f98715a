"""``vlfuse tokens``: how many LLM-context tokens images cost for a model family, and how many fit.

``--model`` is a family (``--list`` shows them, with the released checkpoint whose settings they use) or a local
model folder whose config.json / preprocessor_config.json / processor_config.json are read. Without ``--model``,
``--patch P [--tiles N --thumbnail]`` counts a generic ViT: ``floor(W/P) * floor(H/P)`` tokens per view.
Several ``--size`` / ``--image`` are one prompt (LLaVA-OneVision then counts each image as its base view).
Units: ``W H`` pixels, ``P`` patch side in pixels, token counts in tokens, shares as fractions of the context.
"""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokens", help="visual tokens per image, context share and images that fit",
                       description=__doc__)
    p.add_argument("--model", help="family name (see --list) or a local model folder")
    p.add_argument("--patch", type=int, help="generic ViT: patch side in pixels (instead of --model)")
    p.add_argument("--tiles", type=int, default=0, help="generic: tiles per image, each a --size view")
    p.add_argument("--thumbnail", action="store_true", help="generic: one more view, the whole image")
    p.add_argument("--size", action="append", default=[], metavar="WxH", help="image size; 336 means 336x336")
    p.add_argument("--image", action="append", default=[], metavar="FILE", help="read the size from an image file")
    p.add_argument("--frames", type=int, default=1, help="count each size as a video of N frames")
    p.add_argument("--text-tokens", type=int, default=0, help="text tokens in the prompt (default 0)")
    p.add_argument("--context", type=int, help="context length (default: the model's; generic: 4096)")
    p.add_argument("--processor-defaults", action="store_true",
                   help="use the transformers processor class defaults instead of the released checkpoint's")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a family setting, e.g. --set max_pixels=1003520")
    p.add_argument("--list", action="store_true", help="list the families and their checkpoints")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _families() -> None:
    from vlfuse.budget.families import FAMILIES

    for name in FAMILIES.names():
        cls = FAMILIES.get(name).cls
        print(f"{name:<17} {cls.checkpoint:<42} {cls.processor}")


def _generic(args: argparse.Namespace, sizes: list[tuple[int, int]]) -> tuple[list, dict, int]:
    from vlfuse.budget.calculator import generic_count

    if args.overrides or args.processor_defaults or args.frames != 1:
        raise ValueError("--set, --processor-defaults and --frames need --model FAMILY; the generic --patch rule "
                         "has no family settings")
    context = args.context or 4096
    settings = {"patch": {"value": args.patch, "source": "--patch"},
                "tiles": {"value": args.tiles, "source": "--tiles"},
                "thumbnail": {"value": args.thumbnail, "source": "--thumbnail"},
                "context": {"value": context, "source": "--context" if args.context else "default (no model given)"}}
    return [generic_count(w, h, args.patch, args.tiles, args.thumbnail) for w, h in sizes], settings, context


def _family(args: argparse.Namespace, sizes: list[tuple[int, int]]) -> tuple[list, dict, int, str]:
    from vlfuse.budget.calculator import count_family
    from vlfuse.budget.settings import resolve

    if args.tiles or args.thumbnail:
        raise ValueError("--tiles/--thumbnail belong to the generic --patch rule; a family decides its own tiling")
    r = resolve(args.model, processor_defaults=args.processor_defaults, overrides=args.overrides)
    settings = r.as_json()
    context = args.context or r.settings.context
    if args.context:
        settings["context"] = {"value": context, "source": "--context"}
    return count_family(r, sizes, args.frames), settings, context, r.name


def run(args: argparse.Namespace) -> int:
    from vlfuse.budget.calculator import budget, image_size, parse_size

    if args.context is not None and args.context < 1:
        raise ValueError(f"--context={args.context} must be >= 1 (leave it out for the model's own)")

    if args.list:
        _families()
        return 0
    if (args.model is None) == (args.patch is None):
        raise ValueError("pass exactly one of --model FAMILY|PATH (see --list) and --patch P (generic ViT)")
    sizes = [parse_size(s) for s in args.size] + [image_size(f) for f in args.image]
    if not sizes:
        raise ValueError("no image: pass --size WxH (336 means 336x336) or --image FILE, as often as needed")
    if args.model is None:
        counts, settings, context = _generic(args, sizes)
        name = f"generic ViT, patch {args.patch}"
    else:
        counts, settings, context, name = _family(args, sizes)
    result = budget(sizes, counts, args.text_tokens, context, settings, name)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def render(result: dict) -> str:
    """The human-readable table for one ``budget`` result."""
    lines = [f"{result['model']}: context {result['context']} tokens"]
    for im in result["images"]:
        w, h = im["size"]
        parts = [f"{im['image_tokens']} image"]
        parts += [f"{im[k]} {label}" for k, label in (("special_tokens", "special"), ("row_break_tokens", "row-break"))
                  if im[k]]
        view = f"{im['tiles']} tiles + thumbnail" if im["thumbnail"] else f"{im['tiles']} tiles" if im["tiles"] else ""
        resized = f" -> {im['resized'][0]}x{im['resized'][1]}" if im["resized"] else ""
        frames = f" x {im['frames']} frames" if im["frames"] > 1 else ""
        fit = "-" if im["images_that_fit"] is None else im["images_that_fit"]
        lines.append(f"  {w}x{h}{frames}{resized}{', ' + view if view else ''}: {im['tokens']} tokens = "
                     f"{' + '.join(parts)} ({100 * im['context_share']:.1f}% of context, {fit} fit)")
        if "cross_attention_kv" in im:
            lines.append(f"    cross-attention: {im['cross_attention_tokens']} vision positions "
                         f"({im['cross_attention_kv']} K/V per image with padding tiles)")
        lines += [f"    note: {n}" for n in im["notes"]]
    fit = "-" if result["images_that_fit"] is None else result["images_that_fit"]
    lines.append(f"  text {result['text_tokens']} tokens; total {result['total']} = "
                 f"{100 * result['context_share']:.1f}% of {result['context']}"
                 f"{'' if result['fits'] else ' (DOES NOT FIT)'}; {fit} images of the costliest size fit")
    by_source: dict[str, list[str]] = {}
    for k, v in result["settings"].items():
        by_source.setdefault(v["source"], []).append(f"{k}={v['value']}")
    lines += [f"  settings from {src}: {', '.join(kv)}" for src, kv in by_source.items()]
    return "\n".join(lines)
