"""What a run shows and keeps while it trains: a progress bar (loss, samples/s, ETA) and ``metrics.jsonl``.

On a terminal the bar is drawn with ``rich``; otherwise (CI, a log file) one plain line is printed every
``log_every`` steps, so logs stay readable.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class MetricsWriter:
    """Appends one JSON object per step to ``path``; ``truncate(step)`` drops entries after a resumed step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate(self, global_step: int) -> None:
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("global_step", 0) <= global_step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All entries of a ``metrics.jsonl`` file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class ProgressReporter:
    """One bar per stage. ``show`` None: a bar on a terminal, plain lines otherwise; False: silent."""

    def __init__(self, show: bool | None = None, log_every: int = 20, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream)
        self.silent = show is False
        self.fancy = show is None and self.console.is_terminal
        self.log_every = max(1, log_every)
        self.progress: Progress | None = None
        self._task: Any = None

    def start(self, stage: str, done: int, total: int) -> None:
        self.stage, self.total, self.t0, self.done0 = stage, total, time.perf_counter(), done
        if self.fancy:
            self.progress = Progress(
                TextColumn(f"[bold]{stage}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[sps]:.0f} samples/s"),
                TimeRemainingColumn(), console=self.console,
            )
            self.progress.start()
            self._task = self.progress.add_task(stage, total=total, completed=done, loss=float("nan"), sps=0.0)

    def update(self, step: int, loss: float, samples_per_s: float) -> None:
        if self.silent:
            return
        if self.progress is not None:
            self.progress.update(self._task, completed=step, loss=loss, sps=samples_per_s)
        elif step % self.log_every == 0 or step == self.total:
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / max(step - self.done0, 1) * (self.total - step)
            print(f"{self.stage} step {step}/{self.total}  loss {loss:.4f}  {samples_per_s:.0f} samples/s  "
                  f"eta {eta:.0f}s", file=self.stream, flush=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def message(self, text: str) -> None:
        if not self.silent:
            print(text, file=self.stream, flush=True)
