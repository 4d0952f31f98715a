"""Questions and candidate answers become statements; candidates are each skill's answer vocabulary."""

from __future__ import annotations

import pytest

from vlfuse.data.scenes import RGB, ScenesConfig, generate
from vlfuse.data.statements import candidates, question_text, statement


@pytest.mark.parametrize(("question", "answer", "want"), [
    ("what color is the square ?", "red", "the square is red ."),
    ("what shape is the blue object ?", "circle", "the blue object is a circle ."),
    ("how many objects are there ?", "three", "there are three objects ."),
    ("how many circles are there ?", "two", "there are two circles ."),
    ("where is the red circle relative to the blue square ?", "left", "the red circle is left the blue square ."),
    ("is there a white circle ?", "yes", "there is a white circle ."),
    ("is there a white circle ?", "no", "there is no white circle ."),
    ("what word is written ?", "cat", "the word is cat ."),
    ("describe the image .", "a large red circle .", "a large red circle ."),
    ("is it sunny ?", "maybe", "is it sunny ? maybe"),  # any other question: question + answer
])
def test_statement(question, answer, want):
    assert statement(question, answer) == want


def test_every_scenes_question_form_has_a_statement():
    records = generate(ScenesConfig(), 200, 3)
    for r in records:
        if r["skill"] in ("multi",):
            continue
        q = question_text(r)
        assert not statement(q, "x").startswith(q), q  # a statement form, not the fallback


def test_candidates_are_each_skills_answers():
    records = generate(ScenesConfig(skills={"color": 1, "exist": 1}), 60, 0)
    options = candidates(records)
    assert set(options) == {"color", "exist"} and options["exist"] == ["no", "yes"]
    assert set(options["color"]) <= set(RGB)


def test_a_dual_encoder_folder_is_refused_by_the_vlm_loader(tmp_path):
    from tests.kinds.test_contrastive import _tiny_model
    from vlfuse import VLM
    from vlfuse.kinds import load_model

    model = _tiny_model("infonce")
    model.save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="holds a 'dual_encoder' model, not a decoder VLM"):
        VLM.from_pretrained(str(tmp_path))
    assert type(load_model(tmp_path)).__name__ == "DualEncoder"
