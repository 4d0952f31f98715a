"""Every record of a data file counts unless a cap says otherwise (and then a line says so), and a bad file fails
``vlfuse train`` before step 1 (no checkpoint) and ``vlfuse eval`` before scoring, through ``main(argv)``.

Shapes: images are 8 x 8 RGB PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import TINY_LLAMA, tiny_vlm
from vlfuse.cli.app import main
from vlfuse.train.config import DataConfig

RUN = {
    "model": {
        "encoder": {"kind": "vit", "image_size": 8, "patch_size": 4, "width": 32, "depth": 1, "heads": 2},
        "llm": {"config": dict(TINY_LLAMA)},
    },
    "stages": [{"name": "t", "steps": 2, "batch_size": 2, "warmup_steps": 1}],
}


def write_data(folder: Path, n: int, name: str = "data.json", image: bool = True, **extra) -> Path:
    """``n`` records asking about ``img.png`` (or text-only ones), ``extra`` changing some: ``r1={...}``."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(folder / "img.png")
    ask = "<image>\nwhat color is the circle ?" if image else "what color is the circle ?"
    rows = [{"id": f"r{i}", **({"image": "img.png"} if image else {}), "skill": "color", "conversations": [
        {"from": "human", "value": ask}, {"from": "gpt", "value": "red"}]} for i in range(n)]
    for index, changes in extra.items():
        rows[int(index[1:])].update(changes)
    (folder / name).write_text(json.dumps(rows))
    return folder / name


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "model"
    tiny_vlm().save_pretrained(str(folder))
    return folder


def run_config(tmp_path: Path, **data) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(dict(RUN, data={"source": "llava", **data})))
    return path


def no_checkpoint(out: Path) -> bool:
    return not (out / "checkpoints").exists() and not list(out.rglob("*.safetensors"))


def test_eval_scores_every_record_unless_n_caps_it(model_dir, tmp_path, capsys):
    data = write_data(tmp_path, 900, image=False)  # text-only keeps the test fast; images count the same way
    assert main(["eval", "--model", str(model_dir), "--data", str(data), "--json", "--batch-size", "900"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == 900 and json.loads(out.out)["count"] == {"color": 900}
    assert "records of" not in out.err and "image.resize=pad (padded to a square with the mean colour)" in out.err
    small = write_data(tmp_path / "small", 30)
    assert main(["eval", "--model", str(model_dir), "--data", str(small), "--json", "--n", "20"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == 20
    assert f"eval data: 20 of 30 records of {small} are used (--n=20; without --n every record is used)" in out.err


def test_eval_refuses_paths_outside_the_data_root_unless_allowed(model_dir, tmp_path, capsys):
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "outside.png")
    data = write_data(tmp_path / "d", 3, r1={"image": "../outside.png"})
    assert main(["eval", "--model", str(model_dir), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "1 image path(s) outside the data root" in err and "record 1 (id 'r1') image '../outside.png'" in err
    assert "--allow-outside-root" in err
    assert main(["eval", "--model", str(model_dir), "--data", str(data), "--json", "--allow-outside-root"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3


def test_train_uses_every_record_and_prints_a_cap(tmp_path, capsys):
    data = write_data(tmp_path / "d", 10)
    out = tmp_path / "run"
    assert main(["train", "--config", str(run_config(tmp_path, path=str(data), eval_path=str(data))),
                 "--out", str(out), "--set", "data.train_size=6"]) == 0
    err = capsys.readouterr().err
    assert (f"train data: 6 of 10 records of {data} are used (data.train_size=6; data.train_size=null uses every "
            "record)") in err
    assert "eval data:" not in err  # eval_size unset: every record, silently
    assert json.loads((out / "eval.json").read_text())["n"] == 10


@pytest.mark.parametrize(("where", "rows", "message"), [
    ("path", {"r1": {"image": "gone.png"}, "r3": {"image": "also-gone.png"}}, "2 image(s) cannot be read"),
    ("path", {"r2": {"conversations": [{"from": "human", "value": "<image> hi"}]}}, "1 record(s) without an answer"),
    ("eval_path", {"r0": {"image": "gone.png"}}, "1 image(s) cannot be read"),
])
def test_a_bad_file_fails_training_before_step_one(tmp_path, capsys, where, rows, message):
    good = write_data(tmp_path / "good", 4)
    bad = write_data(tmp_path / "bad", 4, **rows)
    files = {"path": str(good), "eval_path": str(good), where: str(bad)}
    out = tmp_path / "run"
    assert main(["train", "--config", str(run_config(tmp_path, **files)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(bad) in err and "Traceback" not in err
    assert "gone.png" in err or "record 2 (id 'r2') has no 'gpt' turn" in err
    assert no_checkpoint(out)


def test_train_refuses_paths_outside_the_root_unless_allowed(tmp_path, capsys):
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "outside.png")
    data = write_data(tmp_path / "d", 4, r2={"image": str(tmp_path / "outside.png")})  # absolute, elsewhere
    config, out = run_config(tmp_path, path=str(data), eval_size=0), tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "record 2 (id 'r2') image" in err and "data.allow_outside_root=true" in err and no_checkpoint(out)
    assert main(["train", "--config", str(config), "--out", str(out), "--set", "data.allow_outside_root=true"]) == 0
    assert (out / "model" / "config.json").is_file()


def test_the_documented_example_file_evaluates(model_dir, capsys):
    example = Path(__file__).parents[2] / "docs" / "examples" / "data" / "data.json"
    assert main(["eval", "--model", str(model_dir), "--data", str(example), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == {"color": 1, "multi": 1, "text": 1}


def test_scenes_keep_their_sizes():
    assert DataConfig().scenes_size("train") == 20000 and DataConfig().scenes_size("eval") == 800
    assert DataConfig(train_size=24, eval_size=0).scenes_size("train") == 24
    assert DataConfig(train_size=24, eval_size=0).scenes_size("eval") == 0
    with pytest.raises(ValueError, match="train_size must be >= 1"):
        DataConfig(train_size=0)
