"""``vlfuse data scenes|natural --out DIR --n N [--seed S] [--set key=value]``: write a dataset in LLaVA format.

``scenes``: the built-in scenes. ``natural``: the same scenes asked and answered in natural language
(``vlfuse.data.natural``: "What colour is the circle?" -> "Red."), with the demo recipe's scenes settings.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from vlfuse.cli.common import out_dir
from vlfuse.config import load_config
from vlfuse.data.scenes import ScenesConfig, generate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="write datasets to disk", description=__doc__)
    kinds = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, n, natural, about, example in (
        ("scenes", 1000, False, "procedural scenes: PNGs + a LLaVA-format JSON file",
         "scenes setting, e.g. --set max_objects=4 --set image_size=48"),
        ("natural", 4000, True, "the scenes in natural language (capitals, punctuation, synonyms)",
         "scenes setting over the natural defaults, e.g. --set extra_turns=0"),
    ):
        s = kinds.add_parser(name, help=about)
        s.add_argument("--out", required=True)
        s.add_argument("--n", type=int, default=n)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--name", default="data.json", help="JSON file name inside --out")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=example)
        s.set_defaults(func=run, natural=natural)

def run(args: argparse.Namespace) -> int:
    from vlfuse.data.llava_format import write_llava

    out_dir(args.out)
    if args.n < 1:
        raise ValueError(f"--n {args.n}: need at least 1 sample")
    if Path(args.name).name != args.name or not args.name:
        raise ValueError(f"--name {args.name!r} must be a plain file name inside --out (no folders)")
    if args.natural:
        from vlfuse.data.natural import NATURAL_SCENES, generate_natural

        config = load_config(ScenesConfig, None, args.overrides, base=NATURAL_SCENES)
        records = generate_natural(config, args.n, args.seed)
    else:
        records = generate(load_config(ScenesConfig, None, args.overrides), args.n, args.seed)
    path = write_llava(records, args.out, args.name)
    mix = Counter(r.get("skill") for r in records)
    print(f"wrote {len(records)} samples to {path} ({', '.join(f'{k} {v}' for k, v in sorted(mix.items()))})")
    return 0
