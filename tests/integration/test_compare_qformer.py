"""``vlfuse compare`` with the Q-Former designs on a tiny grid: they train, are measured, and freeze the LLM."""

from __future__ import annotations

import json

from tests.integration.test_compare import TINY
from vlfuse.cli.app import main


def test_qformer_designs_train_and_report(tmp_path):
    args = ["compare", "--quick", "--designs", "qformer-no-stage1", "--jobs", "1", "--seeds", "1",
            "--out", str(tmp_path)] + [a for s in TINY for a in ("--set", s)]
    assert main(args) == 0
    d = json.loads((tmp_path / "results.json").read_text())["designs"]
    row = d["qformer-no-stage1"]
    assert row["visual_tokens"] == 16
    cell = row["seeds"]["0"]
    assert cell["train_samples"] == 3 * 4 and cell["params_trained"] < cell["params_total"]
    # the LLM is frozen: what trains is the encoder plus the Q-Former (added parameters)
    assert cell["params_trained"] - cell["params_added"] > 0  # the encoder
    run = json.loads((tmp_path / "cells" / "qformer-no-stage1-seed0" / "cell.json").read_text())["run"]
    assert [s["policy"]["llm"] for s in run["stages"]] == ["freeze"]
