"""Training loop: exact resume (loss sequence equal to an uninterrupted run), signals, stages, LoRA, metrics."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from tests.conftest import TINY_LLAMA
from vlfuse.config import from_dict
from vlfuse.train.checkpoint import latest_checkpoint
from vlfuse.train.config import RunConfig
from vlfuse.train.loop import TrainingInterrupted, train
from vlfuse.train.progress import read_metrics


def tiny_run(stages: list[dict] | None = None, **train_kw) -> RunConfig:
    return from_dict(RunConfig, {
        "model": {
            "encoder": {"kind": "vit", "image_size": 16, "patch_size": 4, "width": 32, "depth": 1, "heads": 2},
            "connector": {"kind": "mlp"},
            "llm": {"config": dict(TINY_LLAMA)},
        },
        "data": {"train_size": 40, "eval_size": 8, "scenes": {"image_size": 16, "max_objects": 3}},
        "train": {"checkpoint_every": 3, "log_every": 1, **train_kw},
        "stages": stages or [{"name": "a", "steps": 4, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2},
                             {"name": "b", "steps": 5, "batch_size": 3, "grad_accum": 2, "lr": 2e-3,
                              "policy": {"encoder": "freeze", "llm": "lora"}}],
    })


def losses(run_dir) -> list[tuple[str, int, float]]:
    return [(m["stage"], m["step"], m["loss"]) for m in read_metrics(run_dir / "metrics.jsonl")]


@pytest.mark.parametrize("stop_after", [2, 6])  # inside the first stage, inside the second (LoRA) stage
def test_resume_gives_the_uninterrupted_loss_sequence(tmp_path, stop_after):
    run = tiny_run()
    full = train(run, tmp_path / "full", show_progress=False)
    train(run, tmp_path / "cut", stop_after=stop_after, show_progress=False)
    assert len(losses(tmp_path / "cut")) == stop_after
    assert not (tmp_path / "cut" / "model").exists()
    resumed = train(run, tmp_path / "cut", resume=True, show_progress=False)
    expected = losses(tmp_path / "full")
    assert len(expected) == 9
    assert losses(tmp_path / "cut") == expected  # exact floats, every step
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    from vlfuse.model import VLM

    run = tiny_run([{"name": "t", "steps": 30, "batch_size": 8, "lr": 3e-3, "warmup_steps": 3}])
    model = train(run, tmp_path, show_progress=False)
    seq = [m["loss"] for m in read_metrics(tmp_path / "metrics.jsonl")]
    assert sum(seq[-5:]) / 5 < 0.7 * sum(seq[:5]) / 5
    loaded = VLM.from_pretrained(str(tmp_path / "model"))
    for (ka, a), (kb, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_second_run_into_the_same_folder_needs_resume(tmp_path):
    run = tiny_run([{"name": "t", "steps": 2, "batch_size": 2}])
    train(run, tmp_path, show_progress=False)
    with pytest.raises(ValueError, match=r"already holds a run.*--resume"):
        train(run, tmp_path, show_progress=False)


def test_sigterm_saves_a_checkpoint_then_stops(tmp_path, monkeypatch):
    import vlfuse.train.loop as loop

    real_step = loop._step
    calls = {"n": 0}

    def step_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-run, handled after this step
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_step", step_then_signal)
    run = tiny_run([{"name": "t", "steps": 10, "batch_size": 2}], checkpoint_every=100)
    with pytest.raises(TrainingInterrupted, match="signal") as info:
        train(run, tmp_path, show_progress=False)
    assert info.value.signum == signal.SIGTERM
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step-0000002"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_frozen_components_do_not_change(tmp_path):
    run = tiny_run([{"name": "t", "steps": 3, "batch_size": 4,
                     "policy": {"encoder": "freeze", "llm": "freeze", "connector": "train"}}])
    from vlfuse.train.loop import build_model, seed_everything

    seed_everything(0)
    before = build_model(run, [])
    after = train(run, tmp_path, show_progress=False)
    for name in ("encoder", "llm"):
        for a, b in zip(getattr(before, name).parameters(), getattr(after, name).parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    moved = [not torch.equal(a, b) for a, b in zip(before.connector.parameters(), after.connector.parameters())]
    assert all(moved)


def test_a_stage_that_trains_nothing_is_refused(tmp_path):
    run = tiny_run([{"name": "t", "steps": 3, "policy": {"encoder": "freeze", "llm": "freeze",
                                                          "connector": "freeze"}}])
    with pytest.raises(ValueError, match="trains nothing"):
        train(run, tmp_path, show_progress=False)
