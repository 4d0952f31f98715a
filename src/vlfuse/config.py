"""Typed configuration: dataclasses next to their components, one loader for YAML/JSON and ``a.b=value`` overrides.

A component section (``encoder``, ``connector``, ``injection``) is resolved through its registry by ``kind``:
``{"kind": "mlp", "depth": 2}`` becomes ``MLPConfig(depth=2)``. Unknown keys, wrong types and unknown kinds
raise ``ConfigError`` naming the key, the value and the valid choices.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or out of range."""


def component(registry_attr: str, default_kind: str, implicit: bool = False) -> Any:
    """A dataclass field holding a registered component's config, chosen by its ``kind``.

    ``registry_attr`` names the registry in ``vlfuse.registry`` (e.g. ``"CONNECTORS"``). ``implicit``: a mapping
    without ``kind`` means ``default_kind`` (a run's ``model`` section: no ``kind`` is the decoder VLM).
    """

    def make_default() -> Any:
        return _component_config(registry_attr, {"kind": default_kind}, "")

    meta = {"registry": registry_attr, "implicit": default_kind if implicit else None}
    return dataclasses.field(default_factory=make_default, metadata=meta)


def _component_config(registry_attr: str, data: Any, where: str, implicit: str | None = None) -> Any:
    import vlfuse.connectors
    import vlfuse.encoders
    import vlfuse.injection
    import vlfuse.kinds  # noqa: F401  (fill the registries)
    from vlfuse import registry as reg

    registry = getattr(reg, registry_attr)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or registry.slot}: expected a mapping with a 'kind' key, got {data!r}")
    if implicit is not None and "kind" not in data:
        data = {**data, "kind": implicit}
    kind = data.get("kind")
    if kind is None:
        raise ConfigError(f"{where or registry.slot}: missing 'kind'; choices are: {', '.join(registry.names())}")
    try:
        entry = registry.get(kind)
    except ValueError as e:
        raise ConfigError(f"{where or registry.slot}: {e}") from None
    return from_dict(entry.config_cls, data, where)


def _check(tp: Any, value: Any, where: str) -> Any:
    """Coerce ``value`` to type ``tp`` or raise ``ConfigError``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        item = args[0] if args else Any
        out = [_check(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[C], data: Any, where: str = "") -> C:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        registry_attr = fields[name].metadata.get("registry")
        if registry_attr:
            kwargs[name] = _component_config(registry_attr, value, key, fields[name].metadata.get("implicit"))
        else:
            kwargs[name] = _check(hints[name], value, key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, JSON-serialisable dict of a (nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"]["c"] = value`` for ``dotted="a.b.c"``, creating mappings on the way.

    A numeric key indexes a list: ``stages.1.lr`` is the second stage's ``lr``.
    """
    keys = dotted.split(".")
    node: Any = data
    for depth, k in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not k.isdigit() or int(k) >= len(node):
                raise ConfigError(f"override {dotted!r}: {k!r} is not an index of a list of {len(node)} item(s)")
            if last:
                node[int(k)] = value
            node = node[int(k)]
        elif isinstance(node, dict):
            if last:
                node[k] = value
            else:
                node = node.setdefault(k, {})
        else:
            raise ConfigError(f"override {dotted!r}: {keys[depth - 1]!r} is not a section")


def parse_overrides(items: list[str] | None) -> list[tuple[str, Any]]:
    """Parse ``["train.lr=1e-3", "connector.kind=linear"]``; values are read as YAML scalars."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw)))
    return out


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML/JSON: {e}") from None
    if data is None or data == {}:  # an empty file would silently run every default
        raise ConfigError(f"config file {str(p)!r} is empty; write the keys to set (e.g. copy a preset from "
                          "src/vlfuse/presets/), or leave out --config to use the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> C:
    """Load ``cls`` from ``base`` (a dict), then a YAML/JSON file, then ``a.b=value`` overrides."""
    data: dict[str, Any] = json.loads(json.dumps(base or {}))
    if path is not None:
        _merge(data, load_mapping(path))
    for key, value in parse_overrides(overrides):
        if key.endswith(".kind"):  # switching design: drop the old design's keys
            set_path(data, key[: -len(".kind")], {"kind": value})
        else:
            set_path(data, key, value)
    return from_dict(cls, data)


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        # a new `kind` replaces the whole section: keys of another design would not fit it
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and v.get("kind", dst[k].get("kind")) == dst[k].get(
            "kind"
        ):
            _merge(dst[k], v)
        else:
            dst[k] = v
