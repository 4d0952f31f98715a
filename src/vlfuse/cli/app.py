"""``vlfuse`` entry point: parse, dispatch, and turn user errors into one clear line (exit code 2)."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from vlfuse.config import ConfigError

COMMANDS = ("train", "eval", "generate", "data", "demo", "compare", "params", "tokens", "cost", "ls")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlfuse", description="Fuse vision and language, every way, one API.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"vlfuse.cli.{name}_cmd").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"vlfuse {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vlfuse {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vlfuse ... | head` closed the pipe: stop quietly, as other command-line tools do
        sys.stdout = open(os.devnull, "w")  # the interpreter flushes stdout at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
