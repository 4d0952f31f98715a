"""Follow-up turns: right answers (recomputed from the scene), no placeholders, first turn unchanged."""

from __future__ import annotations

from collections import Counter

from vlfuse.data.scenes import NUMBER_WORDS, ScenesConfig, generate, layout, make_sample


def _check(question: str, answer: str, scene) -> None:
    objs = scene.objects
    words = question.split()
    if question == "how many objects are there ?":
        assert answer == NUMBER_WORDS[len(objs)]
    elif words[:2] == ["how", "many"]:
        shape = words[2][:-1]
        assert answer == NUMBER_WORDS[sum(o.shape == shape for o in objs)]
    elif words[:2] == ["is", "there"]:
        color, shape = words[3], words[4]
        assert answer == ("yes" if any((o.color, o.shape) == (color, shape) for o in objs) else "no")
    elif words[:3] == ["what", "color", "is"]:
        match = [o for o in objs if o.shape == words[4]]
        assert len(match) == 1 and answer == match[0].color
    elif words[:3] == ["what", "shape", "is"]:
        match = [o for o in objs if o.color == words[4]]
        assert len(match) == 1 and answer == match[0].shape
    elif words[0] == "where" and len(words) == 6:  # "where is the red circle ?": the object's grid cell
        (o,) = [o for o in objs if (o.color, o.shape) == (words[3], words[4])]
        lay = layout(scene.image_size, scene.word is not None)
        rows = ("top", "middle", "bottom") if lay.rows == 3 else ("top", "bottom")
        cols = ("left", "center", "right") if lay.cols == 3 else ("left", "right")
        assert answer == f"{rows[o.cell[0]]} {cols[o.cell[1]]}"
    else:
        assert words[0] == "where"
        a = next(o for o in objs if (o.color, o.shape) == (words[3], words[4]))
        b = next(o for o in objs if (o.color, o.shape) == (words[8], words[9]))
        rel = {"left": a.cell[1] < b.cell[1] and a.cell[0] == b.cell[0],
               "right": a.cell[1] > b.cell[1] and a.cell[0] == b.cell[0],
               "above": a.cell[0] < b.cell[0] and a.cell[1] == b.cell[1],
               "below": a.cell[0] > b.cell[0] and a.cell[1] == b.cell[1]}
        assert rel[answer]


def test_followups_are_correct_and_first_turns_unchanged():
    cfg = ScenesConfig(max_objects=5, extra_turns=4)
    plain = generate(ScenesConfig(max_objects=5), 150, seed=3)
    records = generate(cfg, 150, seed=3)
    kinds = Counter()
    for i, (r, p) in enumerate(zip(records, plain)):
        turns = r["conversations"]
        assert turns[:2] == p["conversations"]  # extra turns never change the evaluated first turn
        if "images" in r:
            assert len(turns) == 2
            continue
        assert 2 < len(turns) <= 2 + 2 * 4
        scene = make_sample(cfg, 3, i).scenes[0]
        for q, a in zip(turns[2::2], turns[3::2]):
            assert q["from"] == "human" and a["from"] == "gpt" and "<image>" not in q["value"]
            _check(q["value"], a["value"], scene)
            kinds[q["value"].split()[0]] += 1
    assert set(kinds) == {"how", "is", "what", "where"}
