"""`vlfuse train --recipe clip / siglip`, `vlfuse eval --task retrieval | zeroshot | answers` and `vlfuse compare`
rows clip and siglip, end to end on a tiny budget (the decoder VLM goes through the same protocol)."""

from __future__ import annotations

import json

import pytest

from vlfuse.cli.app import main

TINY = ["stages.0.steps=2", "stages.0.batch_size=4", "data.train_size=16", "data.eval_size=12",
        "train.eval_batch_size=6", "model.encoder.width=32", "model.encoder.depth=1", "model.encoder.heads=2",
        "model.text.config.hidden_size=32", "model.text.config.intermediate_size=64",
        "model.text.config.num_hidden_layers=1", "model.text.config.num_attention_heads=2", "model.embed_dim=16"]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def trained(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    extra = ["model.text.config.projection_size=32"] if request.param == "siglip" else []
    assert main(["train", "--recipe", request.param, "--out", str(out), *_sets(TINY + extra)]) == 0
    return request.param, out


def test_train_writes_model_metrics_and_retrieval(trained):
    name, out = trained
    meta = json.loads((out / "model" / "config.json").read_text())
    assert meta["model"]["kind"] == "dual_encoder"
    assert meta["model"]["loss"] == {"clip": "infonce", "siglip": "sigmoid"}[name]
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and all(s["loss"] > 0 for s in steps)
    result = json.loads((out / "retrieval.json").read_text())["contrastive"]
    assert result["n"] == 12 and {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"} <= set(result)
    assert all(0 <= result[k] <= 1 for k in result if "_r" in k)
    assert result["i2t_r1"] <= result["i2t_r5"] <= result["i2t_r10"]


def test_eval_tasks(trained, capsys):
    _, out = trained
    model = str(out / "model")
    capsys.readouterr()
    assert main(["eval", "--model", model, "--task", "retrieval", "--n", "10", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 10 and r["i2t_r10"] == 1.0  # every caption is among 10 of 10
    assert main(["eval", "--model", model, "--task", "zeroshot", "--n", "12", "--json"]) == 0
    z = json.loads(capsys.readouterr().out)
    assert z["n"] == 12 and set(z["classes"]) <= {"circle", "square", "triangle"} and 0 <= z["accuracy"] <= 1
    assert main(["eval", "--model", model, "--n", "12", "--json"]) == 0  # questions answered by ranking
    a = json.loads(capsys.readouterr().out)
    assert a["n"] == 12 and all(0 <= v <= 1 for v in a["accuracy"].values())


def test_ranking_answers_come_from_the_skill_vocabulary(trained):
    from vlfuse.data.scenes import ScenesConfig, generate
    from vlfuse.data.statements import candidates
    from vlfuse.kinds import load_model

    _, out = trained
    model = load_model(out / "model")
    records = generate(ScenesConfig(image_size=36, skills={"color": 1, "spatial": 1}), 10, 5)
    options = candidates(records)
    answers = model.answer(records, options)
    for r, a in zip(records, answers):
        assert a in options[r["skill"]]


def test_compare_rows_clip_and_siglip_run_end_to_end(tmp_path):
    sets = ["stages.0.steps=2", "stages.0.batch_size=4", "stages.1.steps=2", "stages.1.batch_size=4",
            "data.train_size=16", "data.eval_size=8", "train.eval_batch_size=8", "model.encoder.width=32",
            "model.encoder.depth=1", "model.encoder.heads=2"]
    out = tmp_path / "grid"
    assert main(["compare", "--quick", "--designs", "clip,siglip", "--seeds", "1", "--out", str(out),
                 *_sets(sets)]) == 0
    results = json.loads((out / "results.json").read_text())
    for name in ("clip", "siglip"):
        d = results["designs"][name]
        cell = d["seeds"]["0"]
        assert cell["train_samples"] == 2 * 2 * 4 and cell["eval_samples"] == 8
        assert d["visual_tokens"] == 1 and cell["kv_bytes_1img"] == 0
        run = json.loads((out / "cells" / f"{name}-seed0" / "cell.json").read_text())["run"]
        assert run["model"]["kind"] == "dual_encoder"
        assert run["model"]["encoder"]["width"] == 32  # the shared vision backbone
        assert all(s["objective"] == "contrastive" for s in run["stages"])
