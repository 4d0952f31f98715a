"""``vlfuse demo``: train the default LLaVA-style recipe on built-in scenes and print accuracy per skill.

Resumes if ``--out`` already holds an unfinished demo run; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import shutil
import time

from vlfuse.cli.common import add_run_args, load_run, out_dir
from vlfuse.cli.train_cmd import train_and_report
from vlfuse.train.checkpoint import latest_checkpoint
from vlfuse.train.resume import check_same_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train the default recipe on built-in scenes, print the table",
                       description=__doc__)
    add_run_args(p)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--fresh", action="store_true", help="delete --out first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = out_dir(args.out)
    if args.fresh or (out / "model").is_dir():
        shutil.rmtree(out, ignore_errors=True)
    config = load_run(args.config, args.overrides)
    print(f"vlfuse demo: {len(config.stages)} stage(s) "
          f"({', '.join(f'{s.name} {s.steps} steps' for s in config.stages)}) -> {out}")
    resume = latest_checkpoint(out) is not None
    if resume and (out / "run.json").is_file():
        try:
            check_same_config(out / "run.json", config)
        except ValueError as e:  # the demo resumes on its own: say how to start over instead
            raise ValueError(f"{out} holds an unfinished demo run with another config; run `vlfuse demo --fresh` "
                             f"(with the same --config / --set) to start over, or drop the change to resume it. "
                             f"{e}") from None
    t0 = time.perf_counter()
    code = train_and_report(config, out, resume=resume)
    print(f"demo wall time: {time.perf_counter() - t0:.0f} s")
    return code
