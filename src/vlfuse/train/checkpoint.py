"""Atomic persistence: exported models (``save_vlm``/``load_vlm``) and training checkpoints (exact resume).

Everything is written to a temporary sibling directory and renamed into place, so an interrupted write never
leaves a half-written model or checkpoint. Model weights are safetensors; loading never unpickles (optimizer
and RNG state use ``torch.load(weights_only=True)``, which refuses arbitrary objects).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from transformers import AutoTokenizer

from vlfuse.config import from_dict, to_dict
from vlfuse.data.instruction import QFORMER_TOKENIZER, load_qformer_tokenizer
from vlfuse.hub import NO_REMOTE_CODE, check_folder
from vlfuse.loading import build_empty, dtype_name, load_weights, read_safetensors, resolve_dtype

FORMAT_VERSION = 1


def atomic_dir(target: Path, write: Any) -> Path:
    """Call ``write(tmp_dir)``, then move ``tmp_dir`` to ``target`` (replacing it) with renames only."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    for f in (p for p in tmp.rglob("*") if p.is_file()):  # flush file contents before the rename shows them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _portable_config(model: Any) -> dict[str, Any]:
    """The model's config with backbone configs inlined, so loading needs none of the original folders."""
    cfg = to_dict(model.config)
    cfg["llm"]["path"] = None
    cfg["llm"]["config"] = model.llm.config.to_dict()
    cfg["tokenizer"]["path"] = None
    if hasattr(model.encoder, "hf_config"):
        cfg["encoder"].update(config=model.encoder.hf_config(),
                              image_mean=list(model.encoder.image_mean), image_std=list(model.encoder.image_std))
        if "path" in cfg["encoder"]:  # a tower loaded from a folder is saved with its config inlined
            cfg["encoder"]["path"] = None
    return cfg


def save_vlm(model: Any, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + tokenizer files into ``directory``, atomically.

    LoRA adapters, if any, are merged into a copy first, so the saved model is a plain one.
    """
    from vlfuse.train.policy import has_lora, merge_lora

    if has_lora(model):
        model = merge_lora(copy.deepcopy(model))

    def write(tmp: Path) -> None:
        meta = {"format": "vlfuse", "version": FORMAT_VERSION, "model": _portable_config(model), **(extra or {})}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        model.tokenizer.save_pretrained(str(tmp))
        if model.qformer_tokenizer is not None:  # InstructBLIP's, in the folder transformers uses
            model.qformer_tokenizer.save_pretrained(str(tmp / QFORMER_TOKENIZER))
        save_model(model, str(tmp / "model.safetensors"))

    return atomic_dir(Path(directory), write)


def read_meta(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a saved vlfuse model, with a clear error for anything else."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ValueError(f"{str(directory)!r} is not a vlfuse model folder (no config.json); train one with "
                         "`vlfuse train` or save one with VLM.save_pretrained")
    meta = json.loads(path.read_text())
    if meta.get("format") != "vlfuse":
        raise ValueError(f"{str(path)!r} is not a vlfuse config; for a transformers model use VLM.from_transformers")
    return meta


def load_vlm(directory: str | Path, dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu") -> Any:
    """Rebuild a model saved by ``save_vlm`` and assign its safetensors weights (strict).

    Parameters are created on ``meta`` and the saved tensors assigned, cast to ``dtype`` (None: each parameter's
    dtype as ``VLM.from_config`` builds it, i.e. the LLM's ``llm.dtype`` and float32 elsewhere) on ``device``.
    """
    from vlfuse.model import VLM, VLMConfig

    meta = read_meta(directory)  # plain JSON; a clear error for a folder that is not a vlfuse model
    kind = meta["model"].get("kind", "vlm")
    if kind != "vlm":
        raise ValueError(f"{str(directory)!r} holds a {kind!r} model, not a decoder VLM; load any kind with "
                         "vlfuse.kinds.load_model (a dual encoder answers by ranking: vlfuse eval, not generate)")
    folder = check_folder(directory, "vlfuse model folder", weights=True)
    config = from_dict(VLMConfig, meta["model"])
    target = resolve_dtype(dtype)
    if target is not None:
        config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, dtype=dtype_name(target)))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **NO_REMOTE_CODE)
    qformer_tokenizer = load_qformer_tokenizer(folder)
    model = build_empty(lambda: VLM.from_config(config, tokenizer=tokenizer, qformer_tokenizer=qformer_tokenizer),
                        target)
    return load_weights(model, read_safetensors(folder, ["model.safetensors"]), dtype=target, device=device)


# --- training checkpoints ---------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every RNG the loop draws from."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuplify(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    state: dict[str, Any]) -> Path:
    """Write ``run_dir/checkpoints/step-XXXXXXX`` atomically and point ``run_dir/checkpoints/latest`` at it.

    The name counts optimizer steps over the whole run (``state['global_step']``), so every stage's checkpoints
    have names of their own and sort in training order.
    """
    ckpt_root = Path(run_dir) / "checkpoints"
    name = f"step-{state['global_step']:07d}"

    def write(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
                   tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))

    path = atomic_dir(ckpt_root / name, write)
    latest_tmp = ckpt_root / ".latest.tmp"
    latest_tmp.write_text(name)
    os.replace(latest_tmp, ckpt_root / "latest")
    return path


CHECKPOINT_FILES = ("state.json", "model.safetensors", "trainer.pt")  # a checkpoint is complete with all three


def checkpoint_state(path: Path) -> dict[str, Any] | None:
    """The loop state saved in checkpoint ``path``, or None if ``path`` is not a complete checkpoint."""
    if not all((path / f).is_file() for f in CHECKPOINT_FILES):
        return None
    try:
        state = json.loads((path / "state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("global_step"), int) else None


def find_checkpoint(run_dir: str | Path) -> tuple[Path | None, str]:
    """The checkpoint to resume from, and a note (empty when ``latest`` was right) saying how it was found.

    ``checkpoints/latest`` names it; when that file is missing or names no complete checkpoint (a run killed
    while saving), the newest complete ``step-*`` folder by global step is taken instead.
    """
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    named = pointer.read_text().strip() if pointer.is_file() else ""
    if named and checkpoint_state(root / named) is not None:
        return root / named, ""
    found = [(state["global_step"], p) for p in root.glob("step-*") if (state := checkpoint_state(p)) is not None]
    problem = (f"{pointer} names {named!r}, which is not a complete checkpoint" if named
               else f"{pointer} is missing" if found else "")
    if not found:
        return None, problem
    step, path = max(found)
    return path, f"{problem}; using the newest complete checkpoint {path.name} (global step {step})"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (see ``find_checkpoint``), or None."""
    return find_checkpoint(run_dir)[0]


def remove_partial_writes(run_dir: str | Path) -> list[str]:
    """Clean up what an interrupted ``atomic_dir`` left in a run folder; returns what was done, one phrase each.

    A ``.NAME.tmp-PID`` folder is a write that never finished: removed. A ``.NAME.old-PID`` folder is the previous
    ``NAME``, moved aside just before its replacement was renamed in: if ``NAME`` is gone (killed between the
    two renames) it is the only copy and is moved back, otherwise it is removed.
    """
    out = Path(run_dir)
    done = []
    # only the names atomic_dir gives model/, checkpoints/step-*, stages/NAME, and the latest pointer's temp file
    for folder, name in ((out, "model"), (out / "checkpoints", "step-*"), (out / "stages", "*")):
        leftovers = [p for kind in (".tmp-", ".old-") for p in sorted(folder.glob(f".{name}{kind}*"))
                     if p.name.rsplit("-", 1)[1].isdigit()]
        for p in [*leftovers, *(folder.glob(".latest.tmp") if name == "step-*" else ())]:
            target = folder / p.name[1:].rsplit(".old-", 1)[0]
            if ".old-" in p.name and p.is_dir() and not target.exists():
                os.replace(p, target)
                done.append(f"restored {target.relative_to(out)} from {p.name}")
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            done.append(f"removed {p.relative_to(out)}")
    return done


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNGs from ``path``; returns the saved loop state."""
    load_model(model, str(path / "model.safetensors"))
    blob = torch.load(path / "trainer.pt", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"])
    return json.loads((path / "state.json").read_text())
