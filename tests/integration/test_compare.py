"""``vlfuse compare`` on a tiny grid: the results schema, the files, and an interrupted run that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlfuse.cli.app import main
from vlfuse.compare.report import COST_KEYS

TINY = ["stages.0.steps=3", "stages.0.batch_size=4", "stages.1.steps=3", "stages.1.batch_size=4",  # both base stages
        "data.train_size=24", "data.eval_size=12",
        "train.eval_batch_size=12", "train.checkpoint_every=1", "model.encoder.width=32", "model.encoder.depth=1",
        "model.encoder.heads=2", "model.llm.config.hidden_size=32", "model.llm.config.intermediate_size=64",
        "model.llm.config.num_hidden_layers=1", "model.llm.config.num_attention_heads=2",
        "model.llm.config.num_key_value_heads=2"]
DESIGNS = "llava-mlp,pooled-1,blind"
ARGS = ["compare", "--quick", "--designs", DESIGNS, "--jobs", "2"] + [a for s in TINY for a in ("--set", s)]
DETERMINISTIC = ("accuracy", "visual_tokens", "params_added", "params_trained", "kv_bytes_1img", "kv_bytes_8img")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "full"
    assert main([*ARGS, "--seeds", "2", "--out", str(out)]) == 0
    return out


def test_results_json_has_every_metric_for_every_design_and_seed(grid):
    results = json.loads((grid / "results.json").read_text())
    assert list(results["designs"]) == DESIGNS.split(",") and results["seeds"] == [0, 1]
    for name, d in results["designs"].items():
        assert set(d["seeds"]) == {"0", "1"}
        for key in COST_KEYS:
            assert set(d[key]) == {"mean", "std"} and d[key]["mean"] >= 0, (name, key)
        for skill, acc in d["accuracy"].items():
            assert 0 <= acc["mean"] <= 1 and acc["std"] >= 0, (name, skill)
        for cell in d["seeds"].values():
            assert cell["train_samples"] == 2 * 3 * 4 and cell["eval_samples"] == 12
            assert cell["decode_ms_per_token_8img"] > 0 and cell["prefill_ms_1img"] > 0
    d = results["designs"]
    assert (d["llava-mlp"]["visual_tokens"], d["pooled-1"]["visual_tokens"], d["blind"]["visual_tokens"]) == (9, 1, 0)
    assert d["blind"]["params_added"] == 0 and d["pooled-1"]["params_added"] == d["llava-mlp"]["params_added"]
    # 7 more images add 7 x 9 visual tokens of K/V: 2 (K, V) x 1 layer x 2 heads x 16 dims x 4 bytes each;
    # the blind control's cache does not grow with images
    grown = d["llava-mlp"]["kv_bytes_8img"]["mean"] - d["llava-mlp"]["kv_bytes_1img"]["mean"]
    assert grown == 7 * 9 * (2 * 1 * 2 * 16 * 4)
    assert d["blind"]["kv_bytes_8img"] == d["blind"]["kv_bytes_1img"]
    assert results["machine"]["cores"] == os.cpu_count()


def test_files_and_table(grid):
    for name in ("results.md", "accuracy_vs_tokens.png", "decode_vs_images.png"):
        assert (grid / name).stat().st_size > 0
    assert (grid / "accuracy_vs_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (grid / "results.md").read_text()
    assert all(f"| {n} |" in md for n in DESIGNS.split(","))


def test_killed_comparison_resumes_skipping_finished_cells(grid, tmp_path):
    out = tmp_path / "killed"
    args = [*ARGS, "--seeds", "2", "--out", str(out)]  # 6 cells: the first finishes long before the last
    cmd = [sys.executable, "-m", "vlfuse.cli.app", *args]
    # a shell's background job (`make test &`) ignores SIGINT and its children inherit that: give Ctrl-C back
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = out / "cells" / "llava-mlp-seed0" / "train.json"
    deadline = time.time() + 120
    while not first.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.is_file(), proc.communicate()[0]
    proc.send_signal(signal.SIGINT)  # stop mid-grid: later cells unfinished
    proc.wait(timeout=60)
    done_before = sorted(p.parent.name for p in out.glob("cells/*/train.json"))
    assert not (out / "results.json").exists() and len(done_before) < 6
    kept = first.read_bytes()
    assert main(args) == 0
    assert first.read_bytes() == kept  # a finished phase is never redone
    a = json.loads((grid / "results.json").read_text())["designs"]
    b = json.loads((out / "results.json").read_text())["designs"]
    for name in a:  # the same cells as the uninterrupted grid, to the bit where results are deterministic
        for seed in ("0", "1"):
            assert {k: a[name]["seeds"][seed][k] for k in DETERMINISTIC} == \
                   {k: b[name]["seeds"][seed][k] for k in DETERMINISTIC}, (name, seed)
    again = (out / "results.json").read_bytes()
    assert main(args) == 0  # everything finished: nothing reruns
    assert (out / "results.json").read_bytes() == again


def test_unknown_design_and_changed_config_are_clear_errors(tmp_path, capsys):
    assert main(["compare", "--designs", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown design 'nope'" in capsys.readouterr().err
    cell = Path(tmp_path) / "cells" / "blind-seed0"
    cell.mkdir(parents=True)
    (cell / "cell.json").write_text(json.dumps({"run": {"train": {}, "stages": []}}))
    assert main([*ARGS[:3], "blind", "--out", str(tmp_path)]) == 2
    assert "another configuration" in capsys.readouterr().err
