"""Answer matching: exact (whitespace-insensitive) and normalised the way the VQAv2 evaluation normalises answers.

Normalised: lower case; punctuation dropped (a comma inside a number such as ``1,000`` and a decimal point are
kept as part of it); number words ``zero`` to ``ten`` (and ``none``) written as digits; the articles ``a``, ``an``,
``the`` dropped; whitespace collapsed. So ``"Yes, there is one."`` matches ``"yes there is 1"`` and ``"Two."``
matches ``"2"``. Reference: Antol et al., "VQA: Visual Question Answering" (2015), https://visualqa.org/evaluation.
"""

from __future__ import annotations

import re
import string

NUMBERS = {w: str(i) for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                            "nine", "ten"))}
NUMBERS["none"] = "0"
ARTICLES = frozenset(("a", "an", "the"))
_NUMBER_SEPARATOR = re.compile(r"(?<=\d)[.,](?=\d)")  # 1,000 and 2.5: kept inside the number
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_APOSTROPHE = re.compile(r"['’]")  # don't -> dont, on both sides alike


def exact_answer(text: str) -> str:
    """``text`` stripped with runs of whitespace as one space; case and punctuation kept."""
    return " ".join(text.split())


def normalise_answer(text: str) -> str:
    """``text`` lower-cased, without punctuation or articles, number words as digits (see the module docstring)."""
    text = _APOSTROPHE.sub("", text.lower())
    text = _NUMBER_SEPARATOR.sub(lambda m: "\0" if m.group() == "." else "", text)  # "\0": a protected point
    text = _PUNCTUATION.sub(" ", text).replace("\0", ".")
    words = [NUMBERS.get(w, w) for w in text.split() if w not in ARTICLES]
    return " ".join(words)


def answer_matches(pred: str, gold: str, normalised: bool = False) -> bool:
    """Exact match after ``exact_answer``, or (``normalised=True``) after ``normalise_answer``."""
    norm = normalise_answer if normalised else exact_answer
    return norm(pred) == norm(gold)
