"""Run a comparison grid: every ``(design, seed)`` cell trained in a worker process of its own (``jobs`` at once,
so each peak-memory figure is that cell's alone), then measured here one at a time (so no timing shares the
machine with training), then gathered into one results file.

Resumable: ``DIR/cells/DESIGN-seedS/result.json`` marks a finished cell and is never redone; an unfinished
cell resumes from its newest checkpoint. The cells' configs are checked against what is asked, so a DIR
cannot silently mix two different comparisons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vlfuse.compare.cell import measure_phase, write_json
from vlfuse.compare.designs import base_mapping, design_run, load_design
from vlfuse.config import ConfigError, to_dict


@dataclass
class Grid:
    """What to compare and where: designs x seeds, the shared base, the device, parallel jobs."""

    designs: list[str]
    seeds: list[int]
    out: Path
    quick: bool = False
    device: str = "cpu"
    jobs: int = 1
    overrides: list[str] = field(default_factory=list)

    def cells(self) -> list[Path]:
        return [self.out / "cells" / f"{d}-seed{s}" for d in self.designs for s in self.seeds]


def prepare(grid: Grid) -> list[Path]:
    """Write each cell's ``cell.json`` (or check the one there matches); returns the cell folders."""
    base = base_mapping(grid.quick)
    threads = max(1, (os.cpu_count() or 1) // grid.jobs) if grid.device == "cpu" else 0
    cells = []
    for name in grid.designs:
        design = load_design(name)
        for seed in grid.seeds:
            run = to_dict(design_run(design, base, seed, grid.device, grid.overrides))
            run["train"]["threads"] = threads
            cell = grid.out / "cells" / f"{name}-seed{seed}"
            spec = {"design": name, "description": design.description, "seed": seed, "run": run}
            if (cell / "cell.json").is_file():
                old = json.loads((cell / "cell.json").read_text())
                if _comparable(old["run"]) != _comparable(run):
                    raise ConfigError(f"{cell} was run with another configuration; use another --out or delete it")
            else:
                cell.mkdir(parents=True, exist_ok=True)
                write_json(cell / "cell.json", spec)
            cells.append(cell)
    return cells


def _comparable(run: dict[str, Any]) -> dict[str, Any]:
    """A run config without what may change between invocations without changing results (threads)."""
    return {**run, "train": {k: v for k, v in run["train"].items() if k != "threads"}}


def _phase(phase: str, cell: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "a") as f:
        return subprocess.Popen([sys.executable, "-m", "vlfuse.compare.cell", phase, str(cell)],
                                stdout=f, stderr=subprocess.STDOUT, env=env)


def _steps_done(cell: Path) -> int:
    path = cell / "run" / "metrics.jsonl"
    return sum(1 for _ in open(path)) if path.is_file() else 0


def _total_steps(cell: Path) -> int:
    return sum(s["steps"] for s in json.loads((cell / "cell.json").read_text())["run"]["stages"])


def run_grid(grid: Grid, console: Console | None = None) -> list[dict[str, Any]]:
    """Train the unfinished cells (``grid.jobs`` at a time), measure them one by one; returns every cell result."""
    console = console or Console()
    cells = prepare(grid)
    todo = [c for c in cells if not (c / "result.json").is_file()]
    for c in cells:
        if c not in todo:
            console.print(f"[dim]{c.name}: finished earlier, skipped[/dim]")
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        _train_all(todo, grid.jobs, progress, console)
    for c in todo:  # here, one at a time, after all training: no timing shares the machine with a worker
        console.print(f"{c.name}: measuring latency, decode and KV cache")
        measure_phase(c)
    return [json.loads((c / "result.json").read_text()) for c in cells]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _train_all(todo: list[Path], jobs: int, progress: Progress, console: Console) -> None:
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None  # SIGTERM stops workers, as Ctrl-C does
    pending = [c for c in todo if not (c / "train.json").is_file()]
    running: dict[Path, tuple[subprocess.Popen, Any]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                c = pending.pop(0)
                task = progress.add_task(c.name, total=_total_steps(c), completed=_steps_done(c))
                if not console.is_terminal:
                    console.print(f"{c.name}: training ({_steps_done(c)}/{_total_steps(c)} steps done)")
                running[c] = (_phase("train", c, c / "log.txt"), task)
            time.sleep(0.5)
            for c, (proc, task) in list(running.items()):
                progress.update(task, completed=_steps_done(c))
                if proc.poll() is not None:
                    del running[c]
                    _wait(proc, c, "train")
                    if not console.is_terminal:
                        console.print(f"{c.name}: trained")
    finally:
        for proc, _ in running.values():  # interrupted: let each worker checkpoint and stop
            proc.terminate()
            proc.wait()
        if main:
            signal.signal(signal.SIGTERM, old)


def _wait(proc: subprocess.Popen, cell: Path, phase: str) -> None:
    if proc.wait() != 0:
        tail = (cell / "log.txt").read_text()[-2000:]
        raise RuntimeError(f"{phase} of {cell.name} failed (exit {proc.returncode}); log {cell / 'log.txt'}:\n{tail}")
