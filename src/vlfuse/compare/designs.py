"""Designs for ``vlfuse compare``: one YAML file each in ``vlfuse/presets/designs/``, layered on a shared base.

A design file says only what differs: ``model`` keys (connector, injection), a ``policy`` (what trains, for
every stage) and, for designs with a recipe of their own, ``stages_before``: stages run before the base's (e.g.
BLIP-2's stage 1; each a full stage mapping, its own ``policy`` keys over the design's) and ``stage``: keys layered
on every base stage (a dual encoder's ``objective: contrastive`` and caption data). A ``model`` of another kind
(``kind: dual_encoder``) replaces the base's model section but keeps its vision encoder. Everything else (data,
vision encoder, LLM, stages, steps, batch: the training budget) comes from the shared base,
``presets/compare/full.yaml`` or ``presets/compare/quick.yaml``, so every row of the table saw the same samples
in the base's stages. Adding a design to the table is adding one file here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vlfuse.config import ConfigError, load_config, load_mapping
from vlfuse.train.config import RunConfig

DEFAULT_DESIGNS = ("llava-linear", "llava-mlp", "blind", "pooled-1")


@dataclass(frozen=True)
class Design:
    """One row of the comparison: a name, a line saying what it is, and its overrides of the base run."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, str] = field(default_factory=dict)
    stages_before: list[dict[str, Any]] = field(default_factory=list)
    stage: dict[str, Any] = field(default_factory=dict)  # keys layered on every base stage (objective, data)


def _layer_stage(stage: dict[str, Any], extra: dict[str, Any]) -> None:
    """Set ``extra``'s keys in ``stage``; mappings (a stage's ``data``) merge key by key."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(stage.get(key), dict):
            _layer_stage(stage[key], value)
        else:
            stage[key] = value


def _folder(name: str) -> Any:
    return resources.files("vlfuse.presets") / name


def design_names() -> list[str]:
    """Every design shipped in ``presets/designs`` (sorted)."""
    return sorted(p.name[:-5] for p in _folder("designs").iterdir() if p.name.endswith(".yaml"))


def load_design(name: str) -> Design:
    """The design called ``name``; an unknown name lists the known ones."""
    path = _folder("designs") / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not path.is_file():  # a name, never a path
        raise ConfigError(f"unknown design {name!r}; designs are: {', '.join(design_names())} "
                          "(add one as vlfuse/presets/designs/NAME.yaml)")
    data = load_mapping(Path(str(path)))
    unknown = sorted(set(data) - {"description", "model", "policy", "stages_before", "stage"})
    if unknown:
        raise ConfigError(f"design {name!r}: unknown key(s) {unknown}; a design sets description, model, policy, "
                          "stages_before, stage")
    before = data.get("stages_before") or []
    if not isinstance(before, list) or not all(isinstance(s, dict) for s in before):
        raise ConfigError(f"design {name!r}: stages_before must be a list of stage mappings, got {before!r}")
    return Design(name, str(data.get("description", "")), dict(data.get("model") or {}),
                  dict(data.get("policy") or {}), list(before), dict(data.get("stage") or {}))


def base_mapping(quick: bool) -> dict[str, Any]:
    """The shared run (data, backbones, budget) as a plain mapping."""
    return load_mapping(Path(str(_folder("compare") / ("quick.yaml" if quick else "full.yaml"))))


def design_run(design: Design, base: dict[str, Any], seed: int, device: str = "auto",
               overrides: list[str] | None = None) -> RunConfig:
    """The ``RunConfig`` of one cell: ``base`` + the design's model keys and policy, seeded with ``seed``."""
    data: dict[str, Any] = json.loads(json.dumps(base))
    model = data.setdefault("model", {})
    if design.model.get("kind", model.get("kind", "vlm")) != model.get("kind", "vlm"):
        # another model kind: its own model section, with the base's vision encoder (the same backbone)
        data["model"] = model = {"encoder": model.get("encoder", {})} if "encoder" in model else {}
    for slot, value in design.model.items():
        model[slot] = value  # a slot is replaced whole: its keys belong to its kind
    for stage in data.get("stages", []):
        stage["policy"] = {**stage.get("policy", {}), **design.policy}
        if design.stage:  # e.g. a dual encoder's objective and caption data, on every base stage
            extra = json.loads(json.dumps(design.stage))
            _layer_stage(stage, extra)
    before = [{**s, "policy": {**design.policy, **s.get("policy", {})}} for s in json.loads(json.dumps(
        design.stages_before))]
    data["stages"] = before + data.get("stages", [])
    data.setdefault("train", {}).update(seed=seed, device=device)
    return load_config(RunConfig, None, overrides, base=data)
