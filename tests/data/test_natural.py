"""The natural-language scenes, and a dataset written that way training through ``vlfuse train`` unchanged: no
``<unk>`` in any target, and answers decode with their punctuation."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.conftest import TINY_LLAMA
from vlfuse.cli.app import main
from vlfuse.data.collate import IGNORE
from vlfuse.data.natural import generate_natural, rephrase
from vlfuse.data.scenes import ScenesConfig, scene_vocabulary

SMALL = ScenesConfig(image_size=16, max_objects=3, extra_turns=2,
                     skills={"color": 1.0, "shape": 1.0, "count": 1.0, "exist": 1.0, "spatial": 1.0})


def test_natural_records_read_like_people_write():
    records = generate_natural(SMALL, 40, seed=0)
    assert {r["skill"] for r in records} == {"color", "shape", "count", "exist", "spatial"}
    texts = [t["value"] for r in records for t in r["conversations"]]
    answers = [t["value"] for r in records for t in r["conversations"] if t["from"] == "gpt"]
    assert all(a[0].isupper() and a.endswith(".") for a in answers)
    assert all(r["conversations"][0]["value"].startswith("<image>\n") for r in records)
    words = {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}
    assert {"colour", "picture"} & words and words - set(scene_vocabulary(SMALL))  # words the scenes never use
    again = generate_natural(SMALL, 5, seed=0)  # record i depends on (config, seed, i) only
    assert [r["conversations"] for r in again] == [r["conversations"] for r in records[:5]]


@pytest.mark.parametrize(("question", "answer", "expected"), [
    ("how many circles are there ?", "zero", {("How many circles are there?", "Zero."),
                                              ("How many circles does the picture show?", "There are no circles.")}),
    ("is there a blue square ?", "yes", {("Is there a blue square?", "Yes, there is one."),
                                         ("Can you see a blue square in the picture?", "Yes."),
                                         ("Does the image contain a blue square?", "Yes, it does.")}),
    ("what color is the circle ?\n<image>", "red", {
        ("What colour is the circle?\n<image>", "Red."), ("Which colour does the circle have?\n<image>", "It is red."),
        ("Tell me the colour of the circle.\n<image>", "The circle is red.")}),
])  # fmt: skip
def test_rephrase_keeps_the_answer_a_function_of_the_question(question, answer, expected):
    from random import Random

    seen = {rephrase(question, answer, Random(i)) for i in range(40)}
    assert seen == expected


def test_unknown_scenes_question_is_refused():
    from random import Random

    with pytest.raises(ValueError, match="no natural phrasing"):
        rephrase("why is the sky blue ?", "because", Random(0))


def test_a_naturally_written_dataset_trains_without_unknown_targets(tmp_path):
    data = tmp_path / "natural"
    assert main(["data", "natural", "--out", str(data), "--n", "12", "--set", "image_size=16",
                 "--set", "max_objects=3"]) == 0
    run = {"model": {"encoder": {"kind": "vit", "image_size": 16, "patch_size": 4, "width": 32, "depth": 1,
                                 "heads": 2}, "llm": {"config": dict(TINY_LLAMA)}},
           "train": {"log_every": 1}, "stages": [{"name": "t", "steps": 2, "batch_size": 4}]}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(run))
    path = data / "data.json"
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"), "--set",
                 "data.source=llava", "--set", f"data.path={path}", "--set", f"data.eval_path={path}"]) == 0
    from vlfuse.model import VLM

    model = VLM.from_pretrained(str(tmp_path / "run" / "model"))
    tok, proc = model.tokenizer, model.processor()
    records = json.loads(path.read_text())
    for r in records:
        r["image"] = str(data / r["image"])
        labels = [lab for lab in proc.encode(r).labels if lab != IGNORE]
        assert tok.unk_token_id not in labels
        answers = [t["value"] for t in r["conversations"] if t["from"] == "gpt"]
        assert tok.decode(labels, skip_special_tokens=True) == "".join(f" {a}" for a in answers)
    for text in ("Seven.", "Yes, there is one.", "It says \"ZEBRA\"."):  # words the data never held, too
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True).strip() == text
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(result["accuracy_normalised"]) == set(result["accuracy"]) == set(result["count"])
