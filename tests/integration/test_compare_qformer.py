"""``vlfuse compare`` with the Q-Former designs on a tiny grid: both train and are measured, and ``blip2`` runs
its stage 1 (``stages_before``, LLM frozen) ahead of the base's stage."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_compare import TINY
from vlfuse.cli.app import main


def compare(out, design: str, extra: list[str]) -> dict:
    args = ["compare", "--quick", "--designs", design, "--jobs", "1", "--seeds", "1", "--out", str(out)]
    assert main(args + [a for s in TINY + extra for a in ("--set", s)]) == 0
    return json.loads((out / "results.json").read_text())["designs"][design]


@pytest.mark.slow
def test_qformer_designs_train_and_report(tmp_path):
    plain = compare(tmp_path / "plain", "qformer-no-stage1", [])
    blip2 = compare(tmp_path / "blip2", "blip2", ["stages.2.steps=3", "stages.2.batch_size=4"])
    for row in (plain, blip2):
        assert row["visual_tokens"] == 4
        cell = row["seeds"]["0"]
        assert cell["params_trained"] == cell["params_total"]  # stage 2 trains everything, as the other rows
        assert 0 <= min(row["accuracy"][s]["mean"] for s in row["accuracy"])
    assert plain["seeds"]["0"]["train_samples"] == 2 * 3 * 4 and blip2["seeds"]["0"]["train_samples"] == 3 * 3 * 4
    # stage 1 adds the text path and heads to the Q-Former
    assert blip2["params_added"] > plain["params_added"]
    runs = {name: json.loads((tmp_path / name / "cells" / f"{design}-seed0" / "cell.json").read_text())["run"]
            for name, design in (("plain", "qformer-no-stage1"), ("blip2", "blip2"))}
    assert [(s["name"], s["objective"], s["policy"].get("llm", "train")) for s in runs["blip2"]["stages"]] == [
        ("pretrain", "blip2", "freeze"), ("warm", "lm", "train"), ("instruct", "lm", "train")]
    assert [s["policy"].get("llm", "train") for s in runs["plain"]["stages"]] == ["train", "train"]
