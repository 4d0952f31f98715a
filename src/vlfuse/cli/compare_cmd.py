"""``vlfuse compare``: train the designs on the same data and backbones, measure them, print one table.

``--quick`` runs the CPU-sized grid (every default design in at most 20 minutes on 2 cores); without it the
full budget is used. Finished cells in ``--out`` are reused, so an interrupted comparison loses nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from rich.console import Console

from vlfuse.cli.common import out_dir
from vlfuse.compare.designs import DEFAULT_DESIGNS, design_names, load_design
from vlfuse.train.config import check_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="train and measure fusion designs side by side", description=__doc__)
    p.add_argument("--designs", help=f"comma-separated (default: {','.join(DEFAULT_DESIGNS)}); see --list")
    p.add_argument("--list", action="store_true", help="list the designs and exit")
    p.add_argument("--quick", action="store_true", help="CPU-sized budget (about 20 minutes on 2 cores)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per design (accuracy is mean ± std over them)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--jobs", type=int, help="cells trained at once (default: 2 on a CPU with 2+ cores, 1 on cuda)")
    p.add_argument("--out", default="runs/compare", help="results folder (default: runs/compare)")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a key of the shared base run for every design, e.g. --set stages.0.steps=50")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vlfuse.compare.report import gather, print_tables, write_all
    from vlfuse.compare.runner import Grid, run_grid

    if args.list:
        width = max(map(len, design_names()))
        for name in design_names():
            print(f"{name:<{width}}  {load_design(name).description}")
        return 0
    names = [n.strip() for n in (args.designs or ",".join(DEFAULT_DESIGNS)).split(",") if n.strip()]
    for n in names:
        load_design(n)  # unknown names fail here, before any training
    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: need at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: need at least 1 (or leave it out for the default)")
    check_device(args.device, "--device", fallback="cpu")
    jobs = args.jobs or (1 if args.device == "cuda" else max(1, min(2, os.cpu_count() or 1)))
    out = out_dir(args.out)
    console = Console(stderr=args.json)
    grid = Grid(names, list(range(args.seeds)), out, args.quick, args.device, jobs, args.overrides)
    t0 = time.perf_counter()
    results = gather(run_grid(grid, console), args.quick, args.device)
    files = write_all(results, out)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        print_tables(results, console)
        console.print(f"wall time {time.perf_counter() - t0:.0f} s; files: " + ", ".join(str(f) for f in files))
    return 0
