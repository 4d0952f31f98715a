"""``vlfuse ls``: the registered encoders, connectors, injections and model kinds, and the run presets and recipes."""

from __future__ import annotations

import argparse

from vlfuse.cli.common import presets, recipes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list registered designs and presets", description=__doc__)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vlfuse import list_designs

    for slot, names in list_designs().items():
        print(f"{slot:<11} {', '.join(names)}")
    print(f"{'presets':<11} {', '.join(presets())}")
    print(f"{'recipes':<11} {', '.join(recipes())}  (vlfuse train --recipe NAME)")
    return 0
