"""Training never loses the last good state: non-finite steps stop the run, checkpoints never overwrite each other,
a broken ``latest`` or a half-written save is recovered from disk, and ``--resume`` refuses a changed config."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

import vlfuse.train.loop as loop
from tests.integration.test_train_resume import losses, tiny_run
from vlfuse.cli.app import main
from vlfuse.config import to_dict
from vlfuse.objectives.stage import Objective
from vlfuse.train.checkpoint import latest_checkpoint
from vlfuse.train.loop import NonFiniteError, train
from vlfuse.train.resume import config_changes


def write_config(tmp_path, run) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(to_dict(run)))  # JSON is YAML
    return str(path)


def poison_step(monkeypatch, k: int) -> None:
    """Make the k-th loss computed in this process NaN (one call per micro-batch)."""
    real = loop.objective
    calls = {"n": 0}

    def poisoned(model, name):
        goal = real(model, name)

        def loss(model, batch):
            calls["n"] += 1
            terms = goal.loss(model, batch)
            return {k_: v * float("nan") for k_, v in terms.items()} if calls["n"] == k else terms

        return Objective(goal.processor, loss)

    monkeypatch.setattr(loop, "objective", poisoned)


def finite(path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(str(path)).values())


def test_a_nan_step_stops_keeps_the_last_good_checkpoint_and_resume_finishes(tmp_path, monkeypatch, capsys):
    run = tiny_run([{"name": "t", "steps": 6, "batch_size": 4, "lr": 3e-3}], checkpoint_every=2, keep_checkpoints=1)
    cfg, out = write_config(tmp_path, run), tmp_path / "run"
    poison_step(monkeypatch, 5)
    assert main(["train", "--config", cfg, "--out", str(out), "--no-eval"]) == 2
    err = capsys.readouterr().err
    assert "stage 't' step 5 (global step 5): the loss is nan" in err and "lower the learning rate (stages.0.lr)" in err
    assert f"--resume continues from checkpoint {out / 'checkpoints' / 'step-0000004'}" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-0000004"]  # pruning kept it
    assert finite(out / "checkpoints" / "step-0000004" / "model.safetensors")
    assert not (out / "model").exists()
    assert [m[1] for m in losses(out)] == [1, 2, 3, 4]  # the NaN step is not recorded

    monkeypatch.undo()
    assert main(["train", "--config", cfg, "--out", str(out), "--no-eval", "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert finite(out / "model" / "model.safetensors")
    train(run, tmp_path / "clean", show_progress=False)
    assert losses(out) == losses(tmp_path / "clean")  # the poisoned run lost nothing: exact resume


def test_fp16_weights_on_cpu_stop_with_the_message_and_save_nothing(tmp_path, capsys):
    run = tiny_run([{"name": "t", "steps": 4, "batch_size": 4}], checkpoint_every=1)
    out = tmp_path / "run"
    code = main(["train", "--config", write_config(tmp_path, run), "--out", str(out), "--no-eval",
                 "--set", "model.llm.dtype=float16", "--set", "train.device=cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(r"stage 't' step \d \(global step \d\): the (weights are not finite|loss is nan)", err)
    assert "float16 weights train without an fp32 master copy" in err and "model.llm.dtype=float32" in err
    assert "no checkpoint was saved yet: run again without --resume" in err
    assert latest_checkpoint(out) is None and not (out / "model").exists()


def test_a_nan_in_a_later_stage_writes_no_model(tmp_path, monkeypatch):
    run = tiny_run([{"name": "a", "steps": 2, "batch_size": 2}, {"name": "b", "steps": 3, "batch_size": 2}],
                   checkpoint_every=2)
    poison_step(monkeypatch, 4)
    with pytest.raises(NonFiniteError, match=r"stage 'b' step 2 \(global step 4\): the loss is nan") as info:
        train(run, tmp_path, show_progress=False)
    assert info.value.checkpoint.name == "step-0000002"  # the end of stage a
    assert (tmp_path / "stages" / "a" / "config.json").is_file()  # stage a finished before the NaN
    assert not (tmp_path / "model").exists() and not (tmp_path / "checkpoints" / "step-0000004").exists()


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss whose gradient overflows."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


@pytest.mark.parametrize("clip", [1.0, 0.0])  # the norm from clipping, and computed without clipping
def test_an_infinite_gradient_with_a_finite_loss_stops_the_run(tmp_path, monkeypatch, clip):
    real = loop.objective

    def overflowing(model, name):
        goal = real(model, name)
        return Objective(goal.processor, lambda m, b: {k: _InfGrad.apply(v) for k, v in goal.loss(m, b).items()})

    monkeypatch.setattr(loop, "objective", overflowing)
    run = tiny_run([{"name": "t", "steps": 2, "batch_size": 2, "clip": clip}])
    with pytest.raises(NonFiniteError, match=r"step 1 \(global step 1\): the gradient norm is (inf|nan);") as info:
        train(run, tmp_path, show_progress=False)
    assert "loss" not in info.value.what and info.value.checkpoint is None
    assert latest_checkpoint(tmp_path) is None and not (tmp_path / "model").exists()


def test_two_stages_checkpoints_do_not_overwrite_each_other(tmp_path):
    run = tiny_run([{"name": "a", "steps": 3, "batch_size": 2}, {"name": "b", "steps": 3, "batch_size": 2}],
                   checkpoint_every=3, keep_checkpoints=10)
    train(run, tmp_path, show_progress=False)
    root = tmp_path / "checkpoints"
    states = {p.name: json.loads((p / "state.json").read_text()) for p in sorted(root.glob("step-*"))}
    assert {k: (s["stage_name"], s["step"], s["global_step"]) for k, s in states.items()} == {
        "step-0000003": ("a", 3, 3), "step-0000006": ("b", 3, 6)}  # both stages' step 3, each kept
    assert (root / "latest").read_text() == "step-0000006"


def test_a_dangling_latest_and_half_written_saves_are_recovered_from_disk(tmp_path, capsys):
    run = tiny_run([{"name": "a", "steps": 2, "batch_size": 2}, {"name": "b", "steps": 3, "batch_size": 2,
                                                                  "policy": {"llm": "lora"}}], checkpoint_every=2)
    train(run, tmp_path / "full", show_progress=False)
    cut = tmp_path / "cut"
    train(run, cut, stop_after=4, show_progress=False)  # checkpoints at global steps 2 and 4
    root = cut / "checkpoints"
    (root / "latest").write_text("step-0000005")  # killed while saving step 5: latest names nothing
    (root / ".step-0000005.tmp-999").mkdir()
    (root / ".step-0000005.tmp-999" / "model.safetensors").write_bytes(b"half")
    (root / "step-0000004").rename(root / ".step-0000004.old-998")  # killed between atomic_dir's two renames
    (root / ".latest.tmp").write_text("step-0000005")
    (cut / ".model.tmp-999").mkdir()
    (cut / ".notes.tmp").write_text("the user's own file")  # not a name atomic_dir writes: kept
    capsys.readouterr()
    train(run, cut, resume=True, show_progress=None)
    said = capsys.readouterr().out
    assert ("cleaned up after an interrupted save: removed .model.tmp-999, removed checkpoints/.step-0000005.tmp-999, "
            "restored checkpoints/step-0000004 from .step-0000004.old-998, removed checkpoints/.latest.tmp") in said
    assert "names 'step-0000005', which is not a complete checkpoint; using the newest complete checkpoint " \
           "step-0000004 (global step 4)" in said
    assert "stage 'b', step 2 of 3, global step 4" in said
    assert [p.name for p in cut.glob(".*")] == [".notes.tmp"] and not list(root.glob(".*"))
    assert losses(cut) == losses(tmp_path / "full")


def test_a_missing_latest_without_checkpoints_is_a_fresh_start(tmp_path, capsys):
    (tmp_path / "checkpoints" / ".step-0000002.tmp-5").mkdir(parents=True)
    run = tiny_run([{"name": "t", "steps": 2, "batch_size": 2}])
    train(run, tmp_path, show_progress=None)  # no complete checkpoint: not a run yet, so no --resume needed
    assert "removed checkpoints/.step-0000002.tmp-5" in capsys.readouterr().out
    assert latest_checkpoint(tmp_path).name == "step-0000002"


def test_resume_on_an_empty_folder_says_so(tmp_path, capsys):
    run = tiny_run([{"name": "t", "steps": 2, "batch_size": 2}])
    out = tmp_path / "empty"
    assert main(["train", "--config", write_config(tmp_path, run), "--out", str(out), "--no-eval", "--resume"]) == 0
    said = capsys.readouterr().out
    assert f"--resume: no checkpoint in {out} to resume from; starting from step 0" in said
    assert [m[1] for m in losses(out)] == [1, 2]


def test_a_changed_config_on_resume_is_refused_and_run_json_kept(tmp_path, capsys):
    run = tiny_run([{"name": "t", "steps": 4, "batch_size": 2, "lr": 3e-3}])
    cfg, out = write_config(tmp_path, run), tmp_path / "run"
    train(run, out, stop_after=2, show_progress=False)
    saved = (out / "run.json").read_text()
    code = main(["train", "--config", cfg, "--out", str(out), "--no-eval", "--resume",
                 "--set", "stages.0.lr=5e-4", "--set", "data.seed=5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "data.seed: 0 -> 5" in err and "stages.0.lr: 0.003 -> 0.0005" in err and "another --out" in err
    assert (out / "run.json").read_text() == saved
    assert latest_checkpoint(out).name == "step-0000002" and len(losses(out)) == 2  # nothing trained
    # settings that cannot change the weights may differ; a key missing from an older run.json is its default
    older = json.loads(saved)
    del older["train"]["seed"]  # its default, 0, is what this run uses
    (out / "run.json").write_text(json.dumps(older))
    saved = (out / "run.json").read_text()
    assert main(["train", "--config", cfg, "--out", str(out), "--no-eval", "--resume",
                 "--set", "train.log_every=7", "--set", "train.keep_checkpoints=1"]) == 0
    assert (out / "run.json").read_text() == saved and len(losses(out)) == 4


def test_config_changes_names_dotted_paths():
    saved = {"a": {"b": 1, "c": [1, 2]}, "s": [{"lr": 0.1}, {"lr": 0.2}], "gone": 1}
    now = {"a": {"b": 1, "c": [1, 3]}, "s": [{"lr": 0.1}, {"lr": 0.5}], "new": 2}
    assert config_changes(saved, now) == [("a.c.1", 2, 3), ("gone", 1, None), ("new", None, 2), ("s.1.lr", 0.2, 0.5)]
    assert config_changes(saved, saved) == []
    assert config_changes({"s": [1]}, {"s": [1, 2]}) == [("s", [1], [1, 2])]


def test_a_finished_run_without_checkpoints_still_needs_resume(tmp_path):
    import shutil

    run = tiny_run([{"name": "t", "steps": 1, "batch_size": 2}])
    train(run, tmp_path, show_progress=False)
    shutil.rmtree(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match=r"already holds a run \(model/\); pass --resume"):
        train(run, tmp_path, show_progress=False)
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_the_demo_with_a_changed_config_names_fresh(tmp_path, capsys):
    run = tiny_run([{"name": "t", "steps": 4, "batch_size": 2}])
    cfg, out = write_config(tmp_path, run), tmp_path / "demo"
    train(run, out, stop_after=2, show_progress=False)  # an unfinished demo run: the demo would resume it
    assert main(["demo", "--config", cfg, "--out", str(out), "--set", "data.seed=5"]) == 2
    err = capsys.readouterr().err
    assert "vlfuse demo --fresh" in err and "data.seed: 0 -> 5" in err
    assert latest_checkpoint(out).name == "step-0000002"  # nothing trained, nothing deleted
