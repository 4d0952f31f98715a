"""Opening a run folder: start a new run or resume one, honestly.

``open_run`` cleans what an interrupted save left, finds the checkpoint to continue from (recovering from a
missing or dangling ``checkpoints/latest``), refuses a folder that already holds a run unless resuming, and on
resume refuses a config that differs from the saved ``run.json`` (which is never rewritten then). Each thing it
decides is said in one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlfuse.config import from_dict, to_dict
from vlfuse.train.checkpoint import checkpoint_state, find_checkpoint, remove_partial_writes
from vlfuse.train.config import RunConfig

# Keys that may differ on resume: they change how a run is run, shown or kept, not what it learns (train.threads
# can change the last bits of CPU float sums; allowed because resuming on a machine with other cores is common).
# run.json keeps the values the run was started with.
RESUME_MAY_CHANGE = ("train.threads", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
                     "train.eval_batch_size")


def config_changes(saved: Any, current: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted.key, saved value, current value)`` for every leaf where two ``to_dict`` trees differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [change for key in sorted(set(saved) | set(current), key=str)
                for change in config_changes(saved.get(key), current.get(key), f"{prefix}{key}.")]
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        return [change for i, (a, b) in enumerate(zip(saved, current))
                for change in config_changes(a, b, f"{prefix}{i}.")]
    return [] if saved == current else [(prefix.rstrip("."), saved, current)]


def check_same_config(saved_path: Path, run: RunConfig) -> None:
    """Raise ``ValueError`` naming every key (but ``RESUME_MAY_CHANGE``) where ``run`` differs from ``saved_path``."""
    current = json.loads(json.dumps(to_dict(run)))  # tuples -> lists, as in the saved file
    saved = json.loads(saved_path.read_text())
    try:  # a key added to the config since the run was saved compares as its default, not as a change
        saved = json.loads(json.dumps(to_dict(from_dict(RunConfig, saved))))
    except ValueError:
        pass  # this version cannot read the saved file: compare it as written
    changes = [c for c in config_changes(saved, current) if c[0] not in RESUME_MAY_CHANGE]
    if changes:
        listed = ", ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes)
        raise ValueError(f"--resume with a config that differs from the run's {saved_path} ({listed}); resuming "
                         "would mix the two. Resume with the saved config (drop the change), or start a new run "
                         "in another --out")


def open_run(run: RunConfig, out: Path, resume: bool, say: Callable[[str], None]) -> Path | None:
    """Prepare ``out`` for training ``run``; returns the checkpoint to resume from (None: start at step 0).

    Raises:
        ValueError: ``out`` holds a run (a checkpoint or ``model/``) and ``resume`` is False; or ``resume`` with a
            config that differs from the saved ``run.json``.
    """
    cleaned = remove_partial_writes(out) if out.is_dir() else []
    if cleaned:
        say(f"cleaned up after an interrupted save: {', '.join(cleaned)}")
    ckpt, note = find_checkpoint(out)
    if not resume:
        held = f"checkpoint {ckpt.name}" if ckpt is not None else "model/" if (out / "model").is_dir() else ""
        if held:
            raise ValueError(f"{str(out)!r} already holds a run ({held}); pass --resume to continue it "
                             "or choose another --out")
    elif ckpt is None:
        say(f"--resume: {note + '; ' if note else ''}no checkpoint in {out} to resume from; starting from step 0")
    else:
        if (out / "run.json").is_file():
            check_same_config(out / "run.json", run)
        if note:
            say(note)
        state = checkpoint_state(ckpt)
        assert state is not None  # find_checkpoint returns complete checkpoints only
        say(f"resuming from {ckpt}: stage {state['stage_name']!r}, step {state['step']} of "
            f"{run.stages[state['stage']].steps}, global step {state['global_step']}")
    out.mkdir(parents=True, exist_ok=True)
    if ckpt is None or not (out / "run.json").is_file():
        (out / "run.json").write_text(json.dumps(to_dict(run), indent=2))
    return ckpt
