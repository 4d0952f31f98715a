"""The BLIP-2 recipe: ``vlfuse train --recipe blip2`` runs stage 1 (ITC + ITM + ITG) then stage 2, keeps each
stage's model, reports retrieval, and resumes exactly inside either stage."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from vlfuse.cli.app import main
from vlfuse.cli.common import load_run
from vlfuse.train.loop import train
from vlfuse.train.progress import read_metrics

TINY = {  # layered on presets/recipes/blip2.yaml
    "model": {"encoder": {"kind": "vit", "image_size": 16, "patch_size": 4, "width": 32, "depth": 1, "heads": 2},
              "connector": {"hidden_size": 32, "layers": 2, "heads": 2, "intermediate_size": 64, "num_queries": 4,
                            "embed_dim": 16},
              "llm": {"config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                                 "max_position_embeddings": 256, "tie_word_embeddings": False}}},
    "data": {"train_size": 24, "eval_size": 8, "scenes": {"image_size": 16, "max_objects": 3, "extra_turns": 0}},
    "train": {"checkpoint_every": 2, "log_every": 1, "eval_batch_size": 8},
    "stages": [{"name": "pretrain", "objective": "blip2", "steps": 3, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1,
                "policy": {"llm": "freeze"}, "data": {"scenes": {"extra_turns": 0, "skills": {
                    "color": 0, "shape": 0, "count": 0, "spatial": 0, "exist": 0, "caption": 1}}, "seed": 2,
                    "eval_seed": 3}},
               {"name": "instruct", "steps": 2, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1,
                "policy": {"llm": "freeze"}}],
}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)


def test_recipe_runs_both_stages_and_reports_retrieval(tmp_path, tiny_config, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "blip2", "--config", tiny_config, "--out", str(out)]) == 0
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["stage"] for m in metrics] == ["pretrain"] * 3 + ["instruct"] * 2
    for m in metrics[:3]:  # stage 1 logs its three terms; their sum is the loss
        assert m["loss"] == pytest.approx(m["loss_itc"] + m["loss_itm"] + m["loss_itg"], rel=1e-5)
    assert "loss_lm" not in metrics[-1]
    assert (out / "stages" / "pretrain" / "model.safetensors").is_file() and (out / "eval.json").is_file()
    result = json.loads((out / "retrieval.json").read_text())["pretrain"]
    assert result["n"] == 8 and all(0 <= result[k] <= 1 for k in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"))
    assert result["i2t_r5"] >= result["i2t_r1"]
    capsys.readouterr()
    assert main(["eval", "--task", "retrieval", "--model", str(out / "stages" / "pretrain"), "--n", "6",
                 "--rerank", "3", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["n"] == 6 and again["rerank"] == 3
    # the LLM never trained: stage 2 froze it, stage 1 froze it too
    run = load_run(tiny_config, [], "blip2")
    from vlfuse.model import VLM
    from vlfuse.train.loop import build_model, seed_everything

    seed_everything(run.train.seed)  # as train() does before it builds the model
    fresh, final = build_model(run, []), VLM.from_pretrained(str(out / "model"))
    for a, b in zip(fresh.llm.state_dict().values(), final.llm.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_recipe_and_stage_data_errors(tmp_path, capsys):
    assert main(["train", "--recipe", "nope", "--out", str(tmp_path)]) == 2
    assert "recipes are: blip2" in capsys.readouterr().err
    assert main(["train", "--recipe", "blip2", "--set", "stages.0.data.scenes.colour=1", "--out", str(tmp_path)]) == 2
    assert "stage 'pretrain' data.scenes: unknown key(s) colour" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [2, 4])  # inside stage 1, inside stage 2
def test_resume_inside_either_stage_gives_the_uninterrupted_run(tmp_path, tiny_config, stop_after):
    run = load_run(tiny_config, [], "blip2")
    full = train(run, tmp_path / "full", show_progress=False)
    train(run, tmp_path / "cut", stop_after=stop_after, show_progress=False)
    resumed = train(run, tmp_path / "cut", resume=True, show_progress=False)
    expected = [(m["stage"], m["loss"]) for m in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    assert [(m["stage"], m["loss"]) for m in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == expected
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
