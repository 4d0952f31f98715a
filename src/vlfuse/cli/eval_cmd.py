"""``vlfuse eval --model DIR [--data FILE | --seed N --n N] [--json]``: exact-match accuracy per skill."""

from __future__ import annotations

import argparse
import json

from vlfuse.cli.common import model_dir
from vlfuse.data.scenes import ScenesConfig
from vlfuse.evaluate import evaluate, print_table
from vlfuse.model import VLM


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy per skill on held-out data", description=__doc__)
    p.add_argument("--model", required=True, help="a folder written by `vlfuse train` (DIR/model) or save_pretrained")
    p.add_argument("--data", help="LLaVA-format JSON/JSONL to evaluate on (default: fresh built-in scenes)")
    p.add_argument("--image-folder", help="folder image paths in --data are relative to (default: its folder)")
    p.add_argument("--seed", type=int, default=1, help="scenes seed (default 1; training uses 0)")
    p.add_argument("--n", type=int, default=800, help="number of scenes (default 800)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--json", action="store_true", help='print {"accuracy": {...}, "n": ...} as JSON')
    p.set_defaults(func=run)


def _scenes_config(folder: str) -> ScenesConfig:
    """The scenes config of the run that trained the model, if ``run.json`` is beside it."""
    from pathlib import Path

    from vlfuse.config import from_dict
    from vlfuse.train.config import DataConfig

    run_file = Path(folder).resolve().parent / "run.json"
    if run_file.is_file():
        return from_dict(DataConfig, json.loads(run_file.read_text())["data"]).scenes
    return ScenesConfig()


def run(args: argparse.Namespace) -> int:
    model = VLM.from_pretrained(model_dir(args.model))
    if args.data:
        from vlfuse.data.llava_format import read_llava

        records = read_llava(args.data, args.image_folder)[: args.n]
    else:
        from vlfuse.data.scenes import generate

        records = generate(_scenes_config(model_dir(args.model)), args.n, args.seed)
    result = evaluate(model, records, args.batch_size)
    if args.json:
        print(json.dumps({"accuracy": result["accuracy"], "n": result["n"], "count": result["count"]}))
    else:
        print_table(result)
    return 0

