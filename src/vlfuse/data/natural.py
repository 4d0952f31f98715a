"""A natural-language version of the built-in scenes: the same images and facts, asked and answered as people write.

``"what color is the circle ?" -> "red"`` becomes ``"What colour is the circle?" -> "Red."`` or
``"Which colour does the circle have?" -> "It is red."``: capitals, punctuation, answers ending in a period, number
words, British spelling and synonyms (``colour``, ``object``/``thing``, ``picture``) the scenes never use. Every
question of a record (follow-up turns too) is rephrased; each phrasing has its own answer form, so the answer
stays a function of the image and the question. Record ``i`` depends only on ``(config, seed, i)``, as in the
scenes. Shapes: each image is ``(H, W) = (image_size, image_size)`` RGB.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from random import Random
from typing import Any

from vlfuse.data.scenes import ScenesConfig, generate

# the scenes settings of ``vlfuse data natural`` (those of the demo recipe; --set overrides them)
NATURAL_SCENES: dict[str, Any] = {
    "image_size": 36, "max_objects": 4, "sizes": ["large"], "extra_turns": 2,
    "skills": {"color": 1.0, "shape": 1.0, "count": 1.5, "exist": 1.0, "spatial": 0.0, "ocr": 0.0, "multi": 0.0,
               "caption": 0.0, "position": 0.0},
}  # fmt: skip
SPATIAL = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
Phrasing = Callable[[tuple[str, ...], str], tuple[str, str]]  # (question groups, scenes answer) -> natural QA


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _count(n: str, noun: str) -> str:
    """``"There are three circles."`` / ``"There is one circle."`` / ``"There are no circles."``."""
    if n == "zero":
        return f"There are no {noun}s."
    return f"There is one {noun}." if n == "one" else f"There are {n} {noun}s."


# scenes question pattern -> its phrasings; each takes the pattern's groups and the scenes answer
RULES: list[tuple[re.Pattern[str], list[Phrasing]]] = [
    (re.compile(r"what color is the (\w+) \?"), [
        lambda g, a: (f"What colour is the {g[0]}?", f"{_cap(a)}."),
        lambda g, a: (f"Which colour does the {g[0]} have?", f"It is {a}."),
        lambda g, a: (f"Tell me the colour of the {g[0]}.", f"The {g[0]} is {a}."),
    ]),
    (re.compile(r"what shape is the (\w+) object \?"), [
        lambda g, a: (f"What shape is the {g[0]} object?", f"A {a}."),
        lambda g, a: (f"Which shape is {g[0]}?", f"The {a}."),
        lambda g, a: (f"What is the {g[0]} thing?", f"It is a {a}."),
    ]),
    (re.compile(r"how many objects are there \?"), [
        lambda g, a: ("How many shapes are there?", f"{_cap(a)}."),
        lambda g, a: ("How many things can you see in the picture?", _count(a, "thing")),
        lambda g, a: ("Count the objects.", f"I count {a}."),
    ]),
    (re.compile(r"how many (\w+)s are there \?"), [
        lambda g, a: (f"How many {g[0]}s are there?", f"{_cap(a)}."),
        lambda g, a: (f"How many {g[0]}s does the picture show?", _count(a, g[0])),
    ]),
    (re.compile(r"is there a (\w+) (\w+) \?"), [
        lambda g, a: (f"Is there a {g[0]} {g[1]}?", "Yes, there is one." if a == "yes" else "No, there is not."),
        lambda g, a: (f"Can you see a {g[0]} {g[1]} in the picture?", f"{_cap(a)}."),
        lambda g, a: (f"Does the image contain a {g[0]} {g[1]}?", "Yes, it does." if a == "yes" else "No, it doesn't."),
    ]),
    (re.compile(r"where is the (\w+) (\w+) relative to the (\w+) (\w+) \?"), [
        lambda g, a: (f"Where is the {g[0]} {g[1]} compared with the {g[2]} {g[3]}?", f"{_cap(SPATIAL[a])} it."),
        lambda g, a: (f"Is the {g[0]} {g[1]} left of, right of, above or below the {g[2]} {g[3]}?", f"{_cap(a)}."),
    ]),
    (re.compile(r"where is the (\w+) (\w+) \?"), [
        lambda g, a: (f"Where is the {g[0]} {g[1]}?", f"In the {a}."),
    ]),
    (re.compile(r"what word is written \?"), [
        lambda g, a: ("What word is written?", f"{a.upper()}."),
        lambda g, a: ("Read the word in the picture.", f'It says "{a.upper()}".'),
    ]),
    (re.compile(r"which image has more (\w+)s \?"), [
        lambda g, a: (f"Which image has more {g[0]}s?", f"The {a} one."),
        lambda g, a: (f"In which picture are there more {g[0]}s?", f"In the {a} picture."),
    ]),
    (re.compile(r"describe the image \."), [
        lambda g, a: ("Describe the image.", _cap(a.replace(" ,", ",").replace(" .", "."))),
    ]),
]  # fmt: skip


def rephrase(question: str, answer: str, rng: Random) -> tuple[str, str]:
    """A natural ``(question, answer)`` for a scenes pair; ``question`` may hold ``<image>`` lines, which stay."""
    images = re.findall(r"<image>\n?", question)
    text = re.sub(r"<image>\n?", "", question).strip()
    for pattern, phrasings in RULES:
        m = pattern.fullmatch(text)
        if m:
            q, a = rng.choice(phrasings)(m.groups(), answer)
            if not images:
                return q, a
            return ("".join(images) + q if question.startswith("<image>") else f"{q}\n" + "".join(images).strip()), a
    raise ValueError(f"no natural phrasing for the scenes question {text!r}; add a rule to vlfuse.data.natural.RULES")


def generate_natural(cfg: ScenesConfig, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` LLaVA-format records (PIL images in memory), each the scenes record ``i`` rephrased, with its
    ``skill``; record ``i`` is the same whatever ``n`` is."""
    records = generate(cfg, n, seed)
    for i, r in enumerate(records):
        rng = Random(f"vlfuse-natural-{seed}-{i}")
        turns = r["conversations"]
        for human, gpt in zip(turns[::2], turns[1::2]):
            human["value"], gpt["value"] = rephrase(human["value"], gpt["value"], rng)
        r["id"] = f"natural-{seed}-{i}"
    return records
