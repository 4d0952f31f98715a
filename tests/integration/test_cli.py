"""The ``vlfuse`` command through ``main(argv)``: data -> train -> eval -> generate, and clear errors."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import TINY_LLAMA
from vlfuse.cli.app import main

TINY_RUN = {
    "model": {
        "encoder": {"kind": "vit", "image_size": 16, "patch_size": 4, "width": 32, "depth": 1, "heads": 2},
        "llm": {"config": dict(TINY_LLAMA)},
    },
    "data": {"train_size": 24, "eval_size": 10, "scenes": {"image_size": 16, "max_objects": 3}},
    "train": {"log_every": 1},
    "stages": [{"name": "t", "steps": 3, "batch_size": 4}],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_RUN))
    assert main(["train", "--config", str(cfg), "--out", str(root / "run"), "--set", "stages.0.steps=4"]) == 0
    return root


def test_train_writes_model_metrics_and_eval(trained, capsys):
    run = trained / "run"
    assert (run / "model" / "model.safetensors").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]  # the --set override took effect
    result = json.loads((run / "eval.json").read_text())
    assert result["n"] == 10 and sum(result["count"].values()) == 10
    assert json.loads((run / "run.json").read_text())["stages"][0]["steps"] == 4


def test_eval_json_output(trained, capsys):
    assert main(["eval", "--model", str(trained / "run"), "--n", "12", "--seed", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 12 and set(out["accuracy"]) == set(out["count"])
    assert all(0.0 <= a <= 1.0 for a in out["accuracy"].values())


def test_data_then_generate_from_files(trained, capsys):
    data = trained / "scenes"
    assert main(["data", "scenes", "--out", str(data), "--n", "6", "--set", "image_size=16",
                 "--set", "max_objects=3"]) == 0
    records = json.loads((data / "data.json").read_text())
    assert len(records) == 6 and all(r["conversations"][0]["value"].startswith("<image>") for r in records)
    image = data / (records[0].get("image") or records[0]["images"][0])
    capsys.readouterr()
    assert main(["generate", "--model", str(trained / "run" / "model"), "--image", str(image),
                 "--prompt", "what color is the circle ?", "--max-new-tokens", "3"]) == 0
    streamed = capsys.readouterr().out.strip()
    from vlfuse.model import VLM

    model = VLM.from_pretrained(str(trained / "run" / "model"))
    from vlfuse.data.llava_format import load_image

    assert streamed == model.generate("<image>\nwhat color is the circle ?", [load_image(image)], max_new_tokens=3)


def test_train_on_a_llava_file(trained, tmp_path):
    data = trained / "scenes"
    cfg = dict(TINY_RUN, data={"source": "llava", "path": str(data / "data.json"),
                               "eval_path": str(data / "data.json"), "train_size": 6, "eval_size": 6})
    path = tmp_path / "llava.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["n"] == 6


def test_unreadable_image_is_a_clear_error(trained, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    code = main(["generate", "--model", str(trained / "run"), "--image", str(bad), "--prompt", "hi"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read image" in err and "broken.png" in err and "Traceback" not in err


def test_config_errors_name_the_key(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--set", "model.connector.depht=3"]) == 2
    err = capsys.readouterr().err
    assert "depht" in err and "valid keys" in err
    assert main(["train", "--out", str(tmp_path), "--config", "no-such-preset"]) == 2
    assert "presets are: llava" in capsys.readouterr().err


def test_ls_lists_designs(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "concat" in out and "llava" in out
