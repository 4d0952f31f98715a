"""The built-in scenes, specified: determinism, balanced answers, a closed vocabulary, and answers that an oracle
reading the scene description (and the rendered pixels) agrees with.

Shapes: images are ``(H, W) = (image_size, image_size)`` RGB; ``multi`` records hold ``N = 2`` of them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vlfuse.data.scenes import (
    BACKGROUND,
    NUMBER_WORDS,
    RGB,
    SKILLS,
    Sample,
    ScenesConfig,
    answer_matches,
    generate,
    layout,
    make_sample,
    normalize_answer,
    render,
    scene_vocabulary,
)


def _pixels(record: dict) -> list[bytes]:
    return [im.tobytes() for im in record.get("images") or [record["image"]]]


def test_same_seed_same_records_and_prefix_property():
    cfg = ScenesConfig()
    long, short = generate(cfg, 12, seed=3), generate(cfg, 6, seed=3)
    assert [r["id"] for r in short] == [f"scenes-3-{i}" for i in range(6)]
    for a, b in zip(long[:6], short):
        assert a["conversations"] == b["conversations"] and a["skill"] == b["skill"]
        assert _pixels(a) == _pixels(b)


def test_different_seed_gives_different_records():
    a, b = generate(ScenesConfig(), 20, seed=0), generate(ScenesConfig(), 20, seed=1)
    assert [r["conversations"] for r in a] != [r["conversations"] for r in b]
    assert sum(_pixels(x) == _pixels(y) for x, y in zip(a, b)) < 3


def test_record_format():
    records = generate(ScenesConfig(), 80, seed=0)
    assert {r["skill"] for r in records} == set(SKILLS) - {"position"}  # off by default
    for r in records:
        human, gpt = r["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        images = r.get("images") or [r["image"]]
        assert ("images" in r) == (r["skill"] == "multi") and len(images) == (2 if r["skill"] == "multi" else 1)
        assert human["value"].startswith("<image>\n" * len(images)) and human["value"].count("<image>") == len(images)
        assert all(im.mode == "RGB" and im.size == (32, 32) for im in images)
        one_word = r["skill"] not in ("caption", "position")
        assert gpt["value"] == gpt["value"].lower() and (len(gpt["value"].split()) == 1) == one_word


@pytest.mark.parametrize(
    ("skill", "low", "high"),
    [("exist", 160, 240), ("multi", 160, 240), ("spatial", 70, 130), ("count", 12, 110), ("position", 25, 75)],
)
def test_answers_are_balanced(skill, low, high):
    answers = Counter(r["conversations"][1]["value"] for r in generate(ScenesConfig(skills={skill: 1.0}), 400, 7))
    expected = {
        "exist": {"yes", "no"},
        "multi": {"first", "second"},
        "spatial": {"left", "right", "above", "below"},
        "count": set(NUMBER_WORDS[:7]),
        "position": {f"{r} {c}" for r in ("top", "middle", "bottom") for c in ("left", "center", "right")},
    }[skill]
    assert set(answers) == expected
    assert all(low <= n <= high for n in answers.values()), answers


def test_color_and_shape_answers_cover_every_choice():
    for skill, choices in (("color", ScenesConfig().colors), ("shape", ScenesConfig().shapes)):
        answers = Counter(r["conversations"][1]["value"] for r in generate(ScenesConfig(skills={skill: 1.0}), 240, 0))
        assert set(answers) == set(choices) and min(answers.values()) >= 240 / len(choices) / 2


def test_every_token_is_in_the_vocabulary():
    for cfg in (ScenesConfig(word_prob=0.5), ScenesConfig(image_size=16, max_objects=3, shapes=("circle", "square")),
                ScenesConfig(skills={"position": 1.0, "spatial": 1.0}, extra_turns=4)):
        vocab = set(scene_vocabulary(cfg))
        assert "<image>" not in vocab and {"?", ",", ".", "circles", "first", "no", "above"} <= vocab
        for seed in range(3):
            for r in generate(cfg, 150, seed):
                tokens = " ".join(t["value"] for t in r["conversations"]).split()
                assert set(tokens) - {"<image>"} <= vocab, r["conversations"]
    assert "triangles" not in scene_vocabulary(ScenesConfig(shapes=("circle", "square")))


def _the(objects, **attrs):
    """The one object with these attributes (the generator promises it is unique)."""
    (found,) = [o for o in objects if all(getattr(o, k) == v for k, v in attrs.items())]
    return found


def _center(o) -> tuple[float, float]:
    return (o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2


def _oracle(sample: Sample) -> str:
    """Answer the question from the scene description alone."""
    q, objects = sample.question.split(), sample.scenes[0].objects
    if sample.skill == "color":
        return _the(objects, shape=q[4]).color
    if sample.skill == "shape":
        return _the(objects, color=q[4]).shape
    if sample.skill == "count":
        return NUMBER_WORDS[len(objects) if q[2] == "objects" else sum(o.shape == q[2][:-1] for o in objects)]
    if sample.skill == "exist":
        return "yes" if any((o.color, o.shape) == (q[3], q[4]) for o in objects) else "no"
    if sample.skill == "spatial":
        (ax, ay), (bx, by) = (
            _center(_the(objects, color=q[3], shape=q[4])),
            _center(_the(objects, color=q[8], shape=q[9])),
        )
        dx, dy = ax - bx, ay - by
        if abs(dx) >= max(3, 1.5 * abs(dy)):
            return "left" if dx < 0 else "right"
        assert abs(dy) >= max(3, 1.5 * abs(dx)), f"ambiguous relation: {sample}"
        return "above" if dy < 0 else "below"
    if sample.skill == "multi":
        first, second = (sum(o.shape == q[4][:-1] for o in s.objects) for s in sample.scenes)
        assert first != second
        return "first" if first > second else "second"
    if sample.skill == "ocr":
        return sample.scenes[0].word
    if sample.skill == "position":  # the grid cell under the object's pixel centre, named like a 3x3 grid
        lay = layout(sample.scenes[0].image_size, sample.scenes[0].word is not None)
        cx, cy = _center(_the(objects, color=q[3], shape=q[4]))
        row, col = int((cy - lay.origin[1]) // lay.cell), int((cx - lay.origin[0]) // lay.cell)
        rows = ("top", "middle", "bottom") if lay.rows == 3 else ("top", "bottom")
        return f"{rows[row]} {('left', 'center', 'right')[col] if lay.cols == 3 else ('left', 'right')[col]}"
    # caption: the multiset of objects, listed by column; columns run left to right in pixels
    items = [
        tuple(item.split()[1:]) for item in sample.answer.split(" the word is ")[0].removesuffix(" .").split(" , ")
    ]
    assert Counter(items) == Counter((o.size, o.color, o.shape) for o in objects)
    return " , ".join(f"a {o.size} {o.color} {o.shape}" for o in sorted(objects, key=lambda o: o.cell[::-1])) + (
        " ." if sample.scenes[0].word is None else f" . the word is {sample.scenes[0].word} ."
    )


@pytest.mark.parametrize("cfg", [ScenesConfig(word_prob=0.3), ScenesConfig(image_size=16, max_objects=3)])
def test_answers_follow_from_the_scene(cfg):
    for i in range(300):
        sample = make_sample(cfg, seed=11, i=i)
        assert sample.answer == _oracle(sample), sample


def test_rendered_pixels_match_the_scene_and_objects_never_touch():
    cfg = ScenesConfig(word_prob=0.5)
    for i in range(150):
        for scene in make_sample(cfg, seed=5, i=i).scenes:
            pixels = np.asarray(render(scene))  # (H, W, 3)
            covered = np.zeros(pixels.shape[:2], dtype=bool)
            for o in scene.objects:
                x0, y0, x1, y1 = o.box
                assert tuple(pixels[(y0 + y1) // 2, (x0 + x1) // 2]) == RGB[o.color]
                grown = covered[max(y0 - 1, 0) : y1 + 2, max(x0 - 1, 0) : x1 + 2]
                assert not grown.any(), "objects must keep a 1-pixel gap"
                covered[y0 : y1 + 1, x0 : x1 + 1] = True
            strip = layout(cfg.image_size, True).strip if scene.word else 0
            assert not covered[cfg.image_size - strip :].any(), "objects must stay above the word strip"
            covered[cfg.image_size - strip :] = True
            assert (pixels[~covered] == BACKGROUND).all()
            if scene.word:
                assert (pixels[cfg.image_size - strip :] == 255).all(axis=-1).sum() >= 12  # white ink in the strip


def test_words_are_drawn_distinctly_and_captions_name_them():
    records = generate(ScenesConfig(skills={"ocr": 1.0}), 60, seed=0)
    by_word: dict[str, set[bytes]] = {}
    for r in records:
        by_word.setdefault(r["conversations"][1]["value"], set()).add(r["image"].crop((0, 21, 32, 32)).tobytes())
    assert len(by_word) >= 8
    strips = [s for group in by_word.values() for s in group]
    assert len(set(strips)) == len(strips), "two different words (or positions) drew the same strip"
    captions = generate(ScenesConfig(skills={"caption": 1.0}, word_prob=1.0), 10, seed=0)
    assert all(" . the word is " in r["conversations"][1]["value"] for r in captions)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"image_size": 12}, ["image_size", "12", "16"]),
        ({"colors": ("red", "pink")}, ["colors", "pink", "purple"]),
        ({"colors": ("red",)}, ["colors", "2+"]),
        ({"shapes": ("circle", "hexagon")}, ["shapes", "hexagon", "triangle"]),
        ({"sizes": ("huge",)}, ["sizes", "huge", "small"]),
        ({"skills": {"colour": 1.0}}, ["skills", "colour", "color"]),
        ({"skills": {"color": 0.0}}, ["skills", "> 0"]),
        ({"min_objects": 4, "max_objects": 3}, ["min_objects", "4", "3"]),
        ({"max_objects": 10}, ["max_objects", "10", "2..9"]),
        ({"max_objects": 1}, ["max_objects", "2..9"]),
        ({"word_prob": 1.5}, ["word_prob", "1.5", "[0, 1]"]),
        ({"word_prob": 0.5, "max_objects": 7}, ["word_prob", "2x3", "max_objects"]),
        ({"words": ("Cat",)}, ["words", "Cat", "lower-case"]),
        ({"words": ("elephant",)}, ["words", "elephant", "32 px"]),
    ],
)
def test_config_errors_name_the_field_value_and_fix(kwargs, names):
    with pytest.raises(ValueError) as err:
        ScenesConfig(**kwargs)
    assert all(n in str(err.value) for n in names), str(err.value)


def test_long_words_are_fine_without_ocr():
    cfg = ScenesConfig(words=("elephant",), skills={"color": 1.0})
    assert generate(cfg, 2, 0)[0]["skill"] == "color"


def test_answer_matching_normalises_case_and_spaces():
    assert normalize_answer("  Red \n ") == "red"
    assert answer_matches("a small  red circle .", "a small red circle .")
    assert not answer_matches("A small RED circle .", "a small red circle .")  # exact: case counts
    assert answer_matches("A small RED circle .", "a small red circle .", normalised=True)
    assert not answer_matches("red circle", "red")


def test_question_first_moves_the_image_after_the_question_and_keeps_the_scene():
    cfg = ScenesConfig(question_first=0.5, skills={"color": 1.0, "multi": 1.0})
    plain = generate(ScenesConfig(skills={"color": 1.0, "multi": 1.0}), 200, seed=5)
    moved = 0
    for r, p in zip(generate(cfg, 200, seed=5), plain):
        q, q0 = r["conversations"][0]["value"], p["conversations"][0]["value"]
        assert r["conversations"][1:] == p["conversations"][1:] and q.count("<image>") == q0.count("<image>")
        if q != q0:
            moved += 1
            assert "images" not in r and q == q0.removeprefix("<image>\n") + "\n<image>"
    assert 25 <= moved <= 75  # half of the ~100 single-image records; multi keeps its images first
