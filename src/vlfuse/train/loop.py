"""The training loop: stages of AdamW with warm-up + cosine, clipping, accumulation, bf16 autocast, exact resume.

Exact resume rests on three things: checkpoints hold model, optimizer, scheduler and every RNG; the data order
is a pure function of ``(seed, stage, step)`` (``EncodedDataset.batch``); and ``metrics.jsonl`` is cut back to
the checkpoint's step. SIGINT / SIGTERM finish the current step, write a checkpoint and stop.

Nothing non-finite is kept: a step whose loss or gradient norm is NaN / inf stops the run before
``opt.step()`` (``NonFiniteError``), and no checkpoint, ``stages/NAME/`` or ``model/`` is written from weights
that are not finite, so the newest checkpoint is always the last good state and ``--resume`` continues from it.
Shapes: ``B`` micro-batch, ``S`` sequence length.
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlfuse.data.dataset import EncodedDataset, load_records, record_texts, scene_texts
from vlfuse.model import VLM
from vlfuse.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from vlfuse.train.config import RunConfig, StageConfig
from vlfuse.train.policy import apply_policy, has_lora, merge_lora
from vlfuse.train.progress import MetricsWriter, ProgressReporter
from vlfuse.train.resume import open_run


class TrainingInterrupted(RuntimeError):
    """Raised after a signal stopped the run; a checkpoint was written first (``path``)."""

    def __init__(self, signum: int, path: Path) -> None:
        super().__init__(f"stopped by signal {signum}; checkpoint saved to {path}; continue with --resume")
        self.signum, self.path = signum, path


class NonFiniteError(ValueError):
    """A step's loss, gradient norm or weights were NaN / inf; the run stopped before saving anything from it.

    ``checkpoint`` is the newest (finite) checkpoint, which ``--resume`` continues from; None if none was saved.
    """

    def __init__(self, what: str, si: int, stage: str, step: int, global_step: int, checkpoint: Path | None,
                 fp16: bool) -> None:
        fix = ("use model.llm.dtype=float32 (float16 weights train without an fp32 master copy or loss scaling, "
               "and overflow)" if fp16 else
               f"lower the learning rate (stages.{si}.lr), train in fp32 (train.precision=fp32) or check the data")
        resume = (f"--resume continues from checkpoint {checkpoint}" if checkpoint is not None
                  else "no checkpoint was saved yet: run again without --resume")
        super().__init__(f"stage {stage!r} step {step} (global step {global_step}): {what}; stopped before saving "
                         f"anything from this step. To fix it, {fix}; {resume}")
        self.what, self.stage, self.step, self.global_step, self.checkpoint = what, stage, step, global_step, checkpoint


class _SignalGuard:
    """Records SIGINT/SIGTERM instead of dying mid-step (main thread only)."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16":
        return True
    return precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


def lr_factor(stage: StageConfig) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at the last step."""

    def factor(step: int) -> float:
        if step < stage.warmup_steps:
            return (step + 1) / stage.warmup_steps
        span = max(stage.steps - stage.warmup_steps, 1)
        progress = min((step - stage.warmup_steps) / span, 1.0)
        return stage.min_lr_ratio + (1 - stage.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage_records(run: RunConfig, records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each stage's training records: ``records`` (the run's data), or the stage's own data, read (and checked)
    once, so a bad file in any stage fails before step 1."""
    return [records if not s.data else load_records(run.stage_data(s), "train") for s in run.stages]


def objective(model: Any, name: str) -> Any:
    """The stage objective ``name`` as ``model``'s kind defines it (``ModelKind.objective``: batches + loss terms)."""
    return model.objective(name)


def build_model(run: RunConfig, records: list[dict[str, Any]],
                per_stage: list[list[dict[str, Any]]] | None = None) -> Any:
    """The run's model; the built-in BPE tokenizer trains on the scenes' words or the data's text (of every
    stage's data, when a stage reads its own; ``per_stage`` from ``stage_records``, else read here), in a fixed
    order, so the same run gives the same tokenizer."""
    texts: list[str] = []
    sources = [(run.data, records)] + [(run.stage_data(s), per_stage[i] if per_stage is not None else None)
                                       for i, s in enumerate(run.stages) if s.data]
    for data, rows in sources:
        if data.source == "scenes":
            texts += scene_texts(data.scenes)  # the scenes' words: no scene is generated for the tokenizer
        elif run.model.tokenizer.path is None:
            texts += record_texts(rows if rows is not None else load_records(data, "train"),
                                  run.model.tokenizer.image_token)
    from vlfuse.kinds import build_model as build_kind

    return build_kind(run.model, texts=texts)  # the model kind run.model.kind names (vlfuse.kinds)


def train(run: RunConfig, out_dir: str | Path, resume: bool = False, stop_after: int | None = None,
          show_progress: bool | None = None) -> VLM:
    """Train ``run`` into ``out_dir`` (``checkpoints/``, ``metrics.jsonl``, ``run.json``, final ``model/``; the
    model after each earlier stage in ``stages/NAME/``).

    ``stop_after`` ends the run after that many optimizer steps in all (with a checkpoint), as an interruption
    would; ``resume`` continues from the newest complete checkpoint (``resume.open_run``: it recovers from a
    broken ``checkpoints/latest`` and refuses a config that differs from ``run.json``).

    Raises:
        NonFiniteError: a step's loss, gradient norm or weights were NaN / inf (nothing was saved from it).
        TrainingInterrupted: SIGINT / SIGTERM (a checkpoint was saved first).
        ValueError: ``out_dir`` holds a run and ``resume`` is False, or ``resume`` with a changed config.
    """
    out = Path(out_dir)
    reporter = ProgressReporter(show_progress, run.train.log_every)
    ckpt = open_run(run, out, resume, reporter.message)
    if run.train.threads:
        torch.set_num_threads(run.train.threads)
    seed_everything(run.train.seed)
    records = load_records(run.data, "train")
    per_stage = stage_records(run, records)
    model = build_model(run, records, per_stage)
    device = resolve_device(run.train.device)
    model.to(device).train()
    state = {"stage": 0, "step": 0, "global_step": 0}
    if ckpt is not None:
        state = json.loads((ckpt / "state.json").read_text())
    metrics = MetricsWriter(out / "metrics.jsonl")
    metrics.truncate(state["global_step"])
    with _SignalGuard() as guard:
        for si in range(len(run.stages)):
            if si < state["stage"]:
                continue
            resume_from = ckpt if (ckpt is not None and si == state["stage"]) else None
            stage = run.stages[si]
            if not _run_stage(run, si, model, per_stage[si], device, state, resume_from, metrics, reporter, guard,
                              stop_after, out):
                return model.eval()
            if has_lora(model):
                merge_lora(model)
            if si < len(run.stages) - 1 and not (out / "stages" / stage.name / "config.json").is_file():
                _check_weights(model, si, stage.name, state, out)
                model.save_pretrained(str(out / "stages" / stage.name))  # each stage's model, e.g. for eval
    _check_weights(model, len(run.stages) - 1, run.stages[-1].name, state, out)
    model.save_pretrained(str(out / "model"))
    return model.eval()


def _run_stage(run: RunConfig, si: int, model: VLM, records: list[dict[str, Any]], device: torch.device,
               state: dict[str, Any], ckpt: Path | None, metrics: MetricsWriter, reporter: ProgressReporter,
               guard: _SignalGuard, stop_after: int | None, out: Path) -> bool:
    """One stage; returns False when the run stopped early (``stop_after``), raises on a signal."""
    stage = run.stages[si]
    apply_policy(model, stage.policy, stage.lora)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"stage {stage.name!r} trains nothing: every component is frozen; set a policy to train")
    opt = torch.optim.AdamW(params, lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(stage))
    start = 0
    if ckpt is not None:
        load_checkpoint(ckpt, model, opt, sched)
        start = state["step"]
    goal = objective(model, stage.objective)
    data = EncodedDataset(records, goal.processor(model), stage.skills)
    stream = data.batches(start * stage.grad_accum, stage.batch_size, seed=run.train.seed * 101 + si)
    bf16 = use_bf16(run.train.precision, device)
    reporter.start(stage.name, start, stage.steps)
    try:
        for step in range(start, stage.steps):
            t0 = time.perf_counter()
            loss, parts, norm = _step(model, goal.loss, stream, stage, device, bf16, params)
            bad = [f"the {k} is {v}" for k, v in (("loss", loss), ("gradient norm", norm)) if not math.isfinite(v)]
            if bad:
                raise NonFiniteError(" and ".join(bad), si, stage.name, step + 1, state["global_step"] + 1,
                                     latest_checkpoint(out), any(p.dtype == torch.float16 for p in params))
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            state.update(stage=si, step=step + 1, global_step=state["global_step"] + 1)
            sps = stage.batch_size * stage.grad_accum / (time.perf_counter() - t0)
            named = {f"loss_{k}": v for k, v in parts.items()} if len(parts) > 1 else {}  # e.g. itc, itm, itg
            metrics.write({"stage": stage.name, "step": step + 1, "global_step": state["global_step"],
                           "loss": loss, **named, "lr": opt.param_groups[0]["lr"], "samples_per_s": round(sps, 2)})
            reporter.update(step + 1, loss, sps)
            g = state["global_step"]
            stopping = bool(guard.signum) or (stop_after is not None and g >= stop_after)
            if stopping or g % run.train.checkpoint_every == 0 or step + 1 == stage.steps:
                _check_weights(model, si, stage.name, state, out)
                path = save_checkpoint(out, model, opt, sched, dict(state, stage_name=stage.name))
                _prune(out, run.train.keep_checkpoints)
            if guard.signum:
                raise TrainingInterrupted(guard.signum, path)
            if stopping:
                return False
    finally:
        reporter.stop()
    return True


def _step(model: VLM, loss_fn: Callable[[VLM, dict[str, torch.Tensor]], dict[str, torch.Tensor]], stream: Any,
          stage: StageConfig, device: torch.device, bf16: bool,
          params: list[torch.nn.Parameter]) -> tuple[float, dict[str, float], float]:
    """Gradients of one optimizer step over ``grad_accum`` micro-batches, clipped; returns the mean loss, its
    named terms and the total gradient norm before clipping (the caller checks them, then steps)."""
    total, parts = 0.0, {}
    for _ in range(stage.grad_accum):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(stream).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            terms = loss_fn(model, batch)
            loss = sum(terms.values()) / stage.grad_accum
        loss.backward()
        total += float(loss.detach())
        for name, term in terms.items():
            parts[name] = parts.get(name, 0.0) + float(term.detach()) / stage.grad_accum
    if stage.clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, stage.clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    return total, parts, float(norm)


def _check_weights(model: VLM, si: int, stage: str, state: dict[str, Any], out: Path) -> None:
    """Raise ``NonFiniteError`` before anything is saved from weights that hold a NaN / inf."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteError(f"the weights are not finite after the optimizer step (first: {name!r})", si, stage,
                                 state["step"], state["global_step"], latest_checkpoint(out), p.dtype == torch.float16)


def _prune(out: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints by global step (never the one ``latest`` points at, which is
    the newest: only finite states are saved)."""
    import shutil

    root = out / "checkpoints"
    latest = (root / "latest").read_text().strip()
    ckpts = sorted((p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()),
                   key=lambda p: int(p.name[5:]))
    for p in ckpts[: max(len(ckpts) - max(keep, 1), 0)]:
        if p.name != latest:
            shutil.rmtree(p, ignore_errors=True)
