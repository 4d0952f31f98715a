"""Questions and candidate answers turned into statements, for models that answer by ranking (late fusion).

A two-tower model cannot generate: it scores texts against an image. So each candidate answer to a question
becomes a statement ("what color is the square ?" + "red" -> "the square is red .") and the best-scoring
statement's answer is the model's answer. The built-in scenes' question forms (``vlfuse.data.scenes.TEMPLATES``)
each have a statement form here; any other question becomes ``"<question> <answer>"``. The candidates of a
question are the answer vocabulary of its skill in the data (``candidates``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_FORMS = [  # (question pattern, statement with {answer} and the pattern's groups)
    (r"what color is the (?P<s>\w+) \?", "the {s} is {answer} ."),
    (r"what shape is the (?P<c>\w+) object \?", "the {c} object is a {answer} ."),
    (r"how many objects are there \?", "there are {answer} objects ."),
    (r"how many (?P<s>\w+)s are there \?", "there are {answer} {s}s ."),
    (r"where is the (?P<c>\w+) (?P<s>\w+) relative to the (?P<c2>\w+) (?P<s2>\w+) \?",
     "the {c} {s} is {answer} the {c2} {s2} ."),
    (r"is there a (?P<c>\w+) (?P<s>\w+) \?", "{exist} {c} {s} ."),
    (r"what word is written \?", "the word is {answer} ."),
    (r"where is the (?P<c>\w+) (?P<s>\w+) \?", "the {c} {s} is at the {answer} ."),
    (r"describe the image \.", "{answer}"),
]
_COMPILED = [(re.compile(p), s) for p, s in _FORMS]


def question_text(record: dict[str, Any]) -> str:
    """The first human turn without its ``<image>`` placeholders, whitespace collapsed."""
    human = next((t["value"] for t in record.get("conversations", []) if t["from"] == "human"), None)
    if human is None:
        raise ValueError(f"record {record.get('id')!r} needs a human turn to be answered")
    return " ".join(human.replace("<image>", " ").split())


def statement(question: str, answer: str) -> str:
    """The statement that ``answer`` makes about the image, for ``question``."""
    q = " ".join(question.split())
    for pattern, form in _COMPILED:
        m = pattern.fullmatch(q)
        if m:
            exist = "there is a" if answer.strip().lower() == "yes" else "there is no"
            return form.format(answer=answer, exist=exist, **m.groupdict())
    return f"{q} {answer}"


def candidates(records: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """``{skill: sorted distinct answers}``: the answer vocabulary of each skill in ``records``."""
    out: dict[str, set[str]] = {}
    for r in records:
        gpt = next((t["value"] for t in r.get("conversations", []) if t["from"] == "gpt"), None)
        if gpt is not None:
            out.setdefault(str(r.get("skill", "all")), set()).add(" ".join(gpt.split()))
    return {k: sorted(v) for k, v in sorted(out.items())}
