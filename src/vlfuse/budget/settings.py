"""Resolve a family's settings and say where each value came from.

Order, later wins: the released checkpoint's published values (the settings dataclass defaults) ->
the transformers processor class defaults (``--processor-defaults``, and always under ``--model PATH``, since
transformers uses them for keys a folder lacks) -> a local model folder's
``config.json`` / ``preprocessor_config.json`` / ``processor_config.json`` (``--model PATH``) -> ``--set key=value``.
Every value carries its source, which ``vlfuse tokens --json`` prints under ``"settings"``.
Shapes and units: sizes in pixels, token counts in tokens, ``C`` context length in tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from vlfuse.budget.families import FAMILIES, Family

HF_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")
_MISSING = object()


@dataclass(frozen=True)
class Resolved:
    """A family with concrete settings, and the source of every setting."""

    name: str  # registered family name
    family: Family
    settings: Any  # the family's frozen settings dataclass
    sources: tuple[tuple[str, str], ...]  # (field, source) in field order

    def as_json(self) -> dict[str, dict[str, Any]]:
        src = dict(self.sources)
        return {f.name: {"value": _jsonable(getattr(self.settings, f.name)), "source": src[f.name]}
                for f in fields(self.settings)}


def _jsonable(v: Any) -> Any:
    return [_jsonable(x) for x in v] if isinstance(v, tuple) else v


def read_model_dir(path: Path) -> dict[str, dict]:
    """The HF JSON files of a local model folder; ``config.json`` is required."""
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"--model {path}: no config.json in that folder; pass a model folder saved with "
                                "save_pretrained, or a family name (see `vlfuse tokens --list`)")
    out = {}
    for name in HF_FILES:
        if (path / name).is_file():
            try:
                out[name] = json.loads((path / name).read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"--model {path}: {name} is not valid JSON ({e}); fix or remove the file") from e
    return out


def lookup(files: dict[str, dict], file: str, dotted: str) -> Any:
    """``files[file]["a"]["b"]`` for ``dotted = "a.b"``; newer processors nest the image processor's keys under
    ``processor_config.json["image_processor"]``, which stands in for a missing preprocessor_config.json."""
    roots = [files.get(file)]
    if file == "preprocessor_config.json":
        roots.append((files.get("processor_config.json") or {}).get("image_processor"))
    for node in roots:
        for key in dotted.split("."):
            node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING and node is not None:
            return node
    return _MISSING


def family_for(files: dict[str, dict], path: Path) -> str:
    """The registered family whose ``model_types`` holds config.json's ``model_type`` (or ``type/vision_type``)."""
    cfg = files["config.json"]
    model_type = cfg.get("model_type")
    vision = (cfg.get("vision_config") or {}).get("model_type")
    for key in (f"{model_type}/{vision}", model_type):
        for name in FAMILIES.names():
            if key in FAMILIES.get(name).cls.model_types:
                return name
    raise ValueError(f"--model {path}: config.json model_type {model_type!r} (vision {vision!r}) matches no family; "
                     f"families are: {', '.join(FAMILIES.names())}; or count with --patch")


def coerce(name: str, value: Any, default: Any, where: str) -> Any:
    """``value`` converted to the type of the field's default; a wrong type names the field and the fix."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: {name}={value!r} must be a list like {_jsonable(default)!r}")
        return tuple(tuple(x) if isinstance(x, list) else x for x in value)
    if isinstance(default, bool) or (default is None and isinstance(value, bool)):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {name}={value!r} must be true or false")
        return value
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if default is not None and not isinstance(value, type(default)):
        raise ValueError(f"{where}: {name}={value!r} must be a {type(default).__name__} like {default!r}")
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """``"max_pixels=1003520"`` -> ``("max_pixels", 1003520)``; values are JSON, else plain strings."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. --set max_pixels=1003520")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def resolve(model: str, *, processor_defaults: bool = False, overrides: Sequence[str] = ()) -> Resolved:
    """Settings for ``model`` (a family name or a local model folder) with the source of each value."""
    path = Path(model)
    files: dict[str, dict] = {}
    if model in FAMILIES:
        name = model
    elif path.is_dir():
        files = read_model_dir(path)
        name = family_for(files, path)
    else:
        raise ValueError(f"--model {model!r} is neither a family nor a model folder; families are: "
                         f"{', '.join(FAMILIES.names())} (or count any ViT with --patch)")
    entry = FAMILIES.get(name)
    family, settings = entry.cls(), entry.config_cls()
    released, default = f"released checkpoint {entry.cls.checkpoint}", f"processor default ({entry.cls.processor})"
    sources = {f.name: default if f.name in entry.cls.unreleased else released for f in fields(settings)}
    values: dict[str, Any] = {}
    if processor_defaults or files:  # transformers falls back to its class defaults for keys a folder lacks
        for k, v in entry.cls.class_defaults.items():
            values[k], sources[k] = v, default
    defaults = {f.name: getattr(settings, f.name) for f in fields(settings)}
    for k, places in entry.cls.hf_keys.items() if files else ():
        for file, dotted in places:
            if (v := lookup(files, file, dotted)) is not _MISSING:
                values[k] = coerce(k, v, defaults[k], f"{path / file}")
                sources[k] = f"local {path / file} ({dotted})"
                break
    for text in overrides:
        k, v = parse_override(text)
        if k not in defaults:
            raise ValueError(f"--set {text!r}: {name} has no setting {k!r}; settings are: {', '.join(defaults)}")
        values[k], sources[k] = coerce(k, v, defaults[k], f"--set {text}"), "--set"
    settings = replace(settings, **values)
    return Resolved(name, family, settings, tuple((f.name, sources[f.name]) for f in fields(settings)))
