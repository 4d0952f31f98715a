"""``vlfuse train [--recipe NAME] --config FILE [--set k=v ...] --out DIR [--resume]``: train, save ``DIR/model``,
evaluate. A recipe (e.g. ``blip2``: Q-Former stage 1, then stage 2) is a base run that ``--config`` layers on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vlfuse.cli.common import add_run_args, load_run, out_dir
from vlfuse.train.loop import TrainingInterrupted, train

PAIR_OBJECTIVES = ("blip2", "contrastive")  # stages trained on image-text pairs, followed by a retrieval report
RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a VLM from a run config", description=__doc__)
    add_run_args(p)
    p.add_argument("--recipe", help="a built-in recipe the config layers on (blip2: BLIP-2's two stages; clip, "
                   "siglip: a dual encoder on captions)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, model/, eval.json")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = out_dir(args.out)
    config = load_run(args.config, args.overrides, args.recipe)
    return train_and_report(config, out, args.resume, evaluate_after=not args.no_eval)


def train_and_report(config: object, out: Path, resume: bool, evaluate_after: bool = True,
                     title: str = "held-out accuracy per skill") -> int:
    """Train, then evaluate on held-out data and print the table; used by ``train`` and ``demo``.

    The held-out records (every record of ``data.eval_path`` unless ``data.eval_size`` caps it) are read and
    their images checked before training starts, so a bad evaluation file fails before step 1.
    """
    from vlfuse.data.dataset import load_records

    records = load_records(config.data, "eval") if evaluate_after else []
    try:
        model = train(config, out, resume=resume)
    except TrainingInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 128 + e.signum
    print(f"model saved to {out / 'model'}")
    if not evaluate_after:
        return 0
    report_retrieval(config, out)
    from vlfuse.evaluate import evaluate, print_table

    if not records:
        print("no evaluation data (data.eval_path / data.eval_size); skipped evaluation")
        return 0
    result = evaluate(model, records, config.train.eval_batch_size)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print_table(result, title)
    return 0


def report_retrieval(config: Any, out: Path) -> None:
    """After a stage on image-text pairs (objective ``blip2`` or ``contrastive``): recall@1/@5/@10 of that stage's
    model on its held-out pairs, printed and written to ``DIR/retrieval.json``."""
    from vlfuse.data.dataset import load_records
    from vlfuse.evaluate_retrieval import retrieval
    from vlfuse.kinds import load_model

    results = {}
    for i, stage in enumerate(config.stages):
        if stage.objective not in PAIR_OBJECTIVES:
            continue
        folder = out / "model" if i == len(config.stages) - 1 else out / "stages" / stage.name
        records = load_records(config.stage_data(stage), "eval")
        if len(records) < 5:
            continue
        result = retrieval(load_model(folder), records, config.train.eval_batch_size)
        results[stage.name] = result
        print(f"retrieval after stage {stage.name!r} on {result['n']} held-out pairs: " + ", ".join(
            f"{k} {100 * result[k]:.1f}%" for k in RECALL_KEYS if k in result))
    if results:
        (out / "retrieval.json").write_text(json.dumps(results, indent=2))
