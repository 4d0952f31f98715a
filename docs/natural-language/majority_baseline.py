"""The majority-class baseline per question type: the most frequent first answer of each skill in the training
file, given to every evaluation question of that skill, scored exact and normalised as ``vlfuse eval`` scores.
A stronger blind baseline beside it: the most frequent training answer to the same question text (the skill's
majority when the training file never asked it), which knows the phrasing and so the answer's form.

    PYTHONPATH=src .venv/bin/python docs/natural-language/majority_baseline.py runs/natural/train/data.json \
        runs/natural/eval/data.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict

from vlfuse.data.answers import answer_matches


def first_answer(record: dict) -> str:
    return next(t["value"] for t in record["conversations"] if t["from"] == "gpt")


def question(record: dict) -> str:
    return next(t["value"] for t in record["conversations"] if t["from"] == "human")


def main(train_path: str, eval_path: str) -> None:
    answers: dict[str, Counter] = defaultdict(Counter)
    by_question: dict[str, Counter] = defaultdict(Counter)
    for r in json.loads(open(train_path).read()):
        answers[r["skill"]][first_answer(r)] += 1
        by_question[question(r)][first_answer(r)] += 1
    majority = {skill: c.most_common(1)[0][0] for skill, c in answers.items()}
    scored: dict[str, list[tuple[bool, ...]]] = defaultdict(list)
    for r in json.loads(open(eval_path).read()):
        gold, guess = first_answer(r), majority[r["skill"]]
        seen = by_question.get(question(r))
        blind = seen.most_common(1)[0][0] if seen else guess
        scored[r["skill"]].append((answer_matches(guess, gold), answer_matches(guess, gold, normalised=True),
                                   answer_matches(blind, gold), answer_matches(blind, gold, normalised=True)))
    print("| skill | majority answer | exact | normalised | per-question majority: exact | normalised | n |")
    print("|---|---|---|---|---|---|---|")
    for skill in sorted(scored):
        hits = scored[skill]
        pct = [f"{100 * sum(h[k] for h in hits) / len(hits):.1f}%" for k in range(4)]
        print(f"| {skill} | {majority[skill]} | {' | '.join(pct)} | {len(hits)} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
