"""Accuracy per skill of greedy answers (batched, KV-cached) to held-out questions, two ways.

``accuracy`` is exact match (case and punctuation count, whitespace does not); ``accuracy_normalised`` matches
after VQAv2-style normalisation (lower case, no punctuation or articles, number words as digits:
``vlfuse.data.answers``). A record's question is its first human turn, its reference the first gpt turn; records
without a ``"skill"`` count under ``"all"``. Shapes: ``B`` batch, ``G`` generated tokens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from vlfuse.data.collate import record_images
from vlfuse.data.scenes import answer_matches
from vlfuse.generate import generate_ids
from vlfuse.model import VLM


def question_answer(record: dict[str, Any]) -> tuple[str, str]:
    turns = record["conversations"]
    human = next((t["value"] for t in turns if t["from"] == "human"), None)
    gpt = next((t["value"] for t in turns if t["from"] == "gpt"), None)
    if human is None or gpt is None:
        raise ValueError(f"record {record.get('id')!r} needs a human and a gpt turn to be evaluated")
    return human, gpt


@torch.no_grad()
def generated_answers(model: VLM, records: Sequence[dict[str, Any]]) -> list[str]:
    """Greedy answers of a decoder ``VLM`` to question records (one batch, left-padded)."""
    proc = model.processor()
    device = next(model.parameters()).device
    qa = [question_answer(r) for r in records]
    examples = [proc.encode_prompt(q, record_images(r)) for r, (q, _) in zip(records, qa)]
    batch = {k: v.to(device) for k, v in proc.collate(examples, "left").items()}
    longest = max(len(model.tokenizer(a, add_special_tokens=False).input_ids) for _, a in qa)
    ids = generate_ids(model, batch, max_new_tokens=longest + 2)
    return model.tokenizer.batch_decode(ids, skip_special_tokens=True)


@torch.no_grad()
def evaluate(model: Any, records: Sequence[dict[str, Any]], batch_size: int = 100,
             keep_predictions: bool = False) -> dict[str, Any]:
    """``{"accuracy": {skill: exact-match fraction}, "accuracy_normalised": {skill: fraction}, "n": total,
    "count": {skill: n}}`` (+ ``"predictions"`` if asked).

    Any model kind: ``model.answer`` generates (``VLM``) or ranks the candidates, which are each skill's answer
    vocabulary in ``records`` (``vlfuse.data.statements.candidates``).
    """
    from vlfuse.data.statements import candidates

    options = candidates(records)
    was_training = model.training
    model.eval()
    hits: dict[str, int] = defaultdict(int)
    loose: dict[str, int] = defaultdict(int)  # normalised-match hits
    counts: dict[str, int] = defaultdict(int)
    predictions = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        qa = [question_answer(r) for r in chunk]
        texts = model.answer(chunk, options)
        for r, (q, gold), pred in zip(chunk, qa, texts):
            skill = str(r.get("skill", "all"))
            counts[skill] += 1
            ok, ok_normalised = answer_matches(pred, gold), answer_matches(pred, gold, normalised=True)
            hits[skill] += int(ok)
            loose[skill] += int(ok_normalised)
            if keep_predictions:
                predictions.append({"id": r.get("id"), "skill": skill, "question": q, "answer": gold,
                                    "prediction": pred.strip(), "correct": ok, "correct_normalised": ok_normalised})
    model.train(was_training)
    result: dict[str, Any] = {
        "accuracy": {s: hits[s] / counts[s] for s in sorted(counts)},
        "accuracy_normalised": {s: loose[s] / counts[s] for s in sorted(counts)},
        "n": sum(counts.values()),
        "count": dict(sorted(counts.items())),
    }
    if keep_predictions:
        result["predictions"] = predictions
    return result


def accuracy_table(result: dict[str, Any], title: str = "accuracy per skill") -> Table:
    """A ``rich`` table: skill, exact-match accuracy, normalised-match accuracy (when present), samples."""
    table = Table(title=title)
    table.add_column("skill")
    table.add_column("exact", justify="right")
    normalised = result.get("accuracy_normalised")
    if normalised is not None:
        table.add_column("normalised", justify="right")
    table.add_column("n", justify="right")
    for skill, acc in result["accuracy"].items():
        loose = [f"{100 * normalised[skill]:.1f}%"] if normalised is not None else []
        table.add_row(skill, f"{100 * acc:.1f}%", *loose, str(result["count"][skill]))
    return table


def print_table(result: dict[str, Any], title: str = "accuracy per skill") -> None:
    """Print ``accuracy_table``: exact and normalised match per skill."""
    Console().print(accuracy_table(result, title))
