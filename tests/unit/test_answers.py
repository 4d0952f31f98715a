"""Exact and VQAv2-style normalised answer matching."""

from __future__ import annotations

import pytest

from vlfuse.data.answers import answer_matches, exact_answer, normalise_answer


@pytest.mark.parametrize(("text", "normalised"), [
    ("Seven.", "7"),
    ("The circle.", "circle"),
    ("A red square", "red square"),
    ("an apple", "apple"),
    ("Yes, there is one.", "yes there is 1"),
    ("TWO", "2"),
    ("none", "0"),
    ("It says \"CAT\".", "it says cat"),
    ("don't", "dont"),
    ("1,000 and 2.5!", "1000 and 2.5"),
    ("  top   left ", "top left"),
    ("theory", "theory"),  # only whole words are articles
])  # fmt: skip
def test_normalise_answer(text, normalised):
    assert normalise_answer(text) == normalised


def test_exact_match_keeps_case_and_punctuation_and_ignores_spacing():
    assert exact_answer("  Seven. \n") == "Seven."
    assert answer_matches("Seven.", " Seven.")
    assert not answer_matches("seven", "Seven.")
    assert answer_matches("seven", "Seven.", normalised=True)
    assert answer_matches("2", "Two.", normalised=True) and answer_matches("two", "2", normalised=True)
    assert not answer_matches("three", "Two.", normalised=True)
