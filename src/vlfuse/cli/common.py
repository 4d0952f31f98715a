"""Helpers shared by subcommands: resolving ``--config`` (a file or a preset name) into a ``RunConfig``."""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path

from vlfuse.config import ConfigError, load_config, load_mapping
from vlfuse.train.config import RunConfig


def presets() -> list[str]:
    """Names of the built-in run presets (``src/vlfuse/presets/*.yaml``)."""
    return sorted(p.name[:-5] for p in resources.files("vlfuse.presets").iterdir() if p.name.endswith(".yaml"))


NAME = re.compile(r"[A-Za-z0-9_-]+")  # what a built-in preset, recipe or design may be called


def is_name(text: str) -> bool:
    """``text`` is a registered-name shape (letters, digits, ``-``, ``_``), never a path."""
    return NAME.fullmatch(text) is not None


def preset_path(name_or_path: str) -> Path:
    """``--config``: an existing file, or else the name of a built-in preset (never a path into the presets)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if is_name(name_or_path):
        candidate = resources.files("vlfuse.presets") / f"{name_or_path}.yaml"
        if candidate.is_file():
            return Path(str(candidate))
        raise ConfigError(f"--config {name_or_path!r} is neither a file nor a preset; presets are: "
                          f"{', '.join(presets())}")
    why = "is a folder, not a config file" if path.is_dir() else "does not exist"
    raise ConfigError(f"--config {name_or_path!r} {why}; pass a YAML/JSON file or a preset name "
                      f"({', '.join(presets())})")


def out_dir(path: str, flag: str = "--out") -> Path:
    """``path`` as an output folder: refused, naming it, when it or a folder above it is a file."""
    p = Path(path)
    for node in (p, *p.parents):
        if node.exists() and not node.is_dir():
            where = "is a file" if node == p else f"is under {str(node)!r}, which is a file"
            raise ValueError(f"{flag} {path!r} {where}; {flag} must be a folder (it is created if missing)")
    return p


def recipes() -> list[str]:
    """Names of the built-in recipes (``src/vlfuse/presets/recipes/*.yaml``)."""
    folder = resources.files("vlfuse.presets") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_run(config: str | None, overrides: list[str] | None, recipe: str | None = None) -> RunConfig:
    """``--config`` (default: the ``llava`` preset) plus ``--set key=value`` overrides.

    With ``recipe``, the recipe file is the base and ``--config`` (optional then) layers on it.
    """
    if recipe is None:
        return load_config(RunConfig, preset_path(config or "llava"), overrides)
    path = resources.files("vlfuse.presets") / "recipes" / f"{recipe}.yaml"
    if not is_name(recipe) or not path.is_file():  # a name only: never a path into (or out of) the recipes
        raise ConfigError(f"--recipe {recipe!r} is not a recipe; recipes are: {', '.join(recipes())}")
    base = load_mapping(Path(str(path)))
    return load_config(RunConfig, preset_path(config) if config else None, overrides, base=base)


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config file (YAML/JSON) or preset name (default: llava)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a config value, e.g. --set stages.0.lr=1e-3 --set model.connector.kind=linear")


def model_dir(path: str) -> str:
    """A saved model folder; a run folder (``runs/x``) means its ``runs/x/model``."""
    p = Path(path)
    if not (p / "config.json").is_file() and (p / "model" / "config.json").is_file():
        return str(p / "model")
    return path
