"""``vlfuse train --config FILE [--set k=v ...] --out DIR [--resume]``: train, save ``DIR/model``, evaluate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlfuse.cli.common import add_run_args, load_run
from vlfuse.train.loop import TrainingInterrupted, train


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a VLM from a run config", description=__doc__)
    add_run_args(p)
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, model/, eval.json")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_run(args.config, args.overrides)
    return train_and_report(config, Path(args.out), args.resume, evaluate_after=not args.no_eval)


def train_and_report(config: object, out: Path, resume: bool, evaluate_after: bool = True,
                     title: str = "held-out accuracy per skill") -> int:
    """Train, then evaluate on held-out data and print the table; used by ``train`` and ``demo``."""
    try:
        model = train(config, out, resume=resume)
    except TrainingInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 128 + e.signum
    print(f"model saved to {out / 'model'}")
    if not evaluate_after:
        return 0
    from vlfuse.data.dataset import load_records
    from vlfuse.evaluate import evaluate, print_table

    records = load_records(config.data, "eval")
    if not records:
        print("no evaluation data (data.eval_path / data.eval_size); skipped evaluation")
        return 0
    result = evaluate(model, records, config.train.eval_batch_size)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print_table(result, title)
    return 0
