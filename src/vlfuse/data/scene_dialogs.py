"""Follow-up turns for scenes: more questions about the same image, answered from the scene itself.

LLaVA-Instruct holds multi-turn conversations per image; here ``ScenesConfig.extra_turns`` adds up to that many
follow-up question/answer turns to each single-image record. Training then gets several targets for each image
it encodes, which is most of a small model's compute. Follow-up answers are computed from the drawn scene, so
they are always right, but unlike first turns they are not balanced; evaluation reads first turns only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import permutations
from random import Random
from typing import Any

QA = tuple[str, str]


def followups(rng: Random, scene: Any, shapes: tuple[str, ...], colors: tuple[str, ...], n: int,
              templates: dict[str, str], numbers: tuple[str, ...],
              where: Callable[[tuple[int, int]], str] | None = None) -> list[QA]:
    """Up to ``n`` distinct-kind ``(question, answer)`` pairs about ``scene`` (a ``scenes.Scene``).

    ``where`` names a grid cell; when given, one kind is "where is the X ?" about a uniquely described object."""
    objs = scene.objects
    pairs = Counter((o.shape, o.color) for o in objs)
    by_shape, by_color = Counter(o.shape for o in objs), Counter(o.color for o in objs)
    qa: list[QA] = [(templates["count"], numbers[len(objs)])]
    s = rng.choice(shapes)
    qa.append((templates["count_shape"].format(shape=s), numbers[by_shape[s]]))
    if objs and rng.random() < 0.5:  # half the time ask about something that is there
        o = rng.choice(objs)
        shape, color = o.shape, o.color
    else:
        shape, color = rng.choice(shapes), rng.choice(colors)
    qa.append((templates["exist"].format(shape=shape, color=color), "yes" if pairs[(shape, color)] else "no"))
    unique_shape = [o for o in objs if by_shape[o.shape] == 1]
    if unique_shape:
        o = rng.choice(unique_shape)
        qa.append((templates["color"].format(shape=o.shape), o.color))
    unique_color = [o for o in objs if by_color[o.color] == 1]
    if unique_color:
        o = rng.choice(unique_color)
        qa.append((templates["shape"].format(color=o.color), o.shape))
    unique = [o for o in objs if pairs[(o.shape, o.color)] == 1]
    if where is not None and unique:
        o = rng.choice(unique)
        qa.append((templates["position"].format(color=o.color, shape=o.shape), where(o.cell)))
    spatial = _spatial(objs, pairs, templates)
    if spatial:
        qa.append(rng.choice(spatial))
    rng.shuffle(qa)
    return qa[:n]


def _spatial(objs: Any, pairs: Counter, templates: dict[str, str]) -> list[QA]:
    """Every relation between two uniquely described objects sharing a grid row or column."""
    unique = [o for o in objs if pairs[(o.shape, o.color)] == 1]
    out = []
    for a, b in permutations(unique, 2):
        (ra, ca), (rb, cb) = a.cell, b.cell
        if ra == rb:
            answer = "left" if ca < cb else "right"
        elif ca == cb:
            answer = "above" if ra < rb else "below"
        else:
            continue
        q = templates["spatial"].format(color=a.color, shape=a.shape, color2=b.color, shape2=b.shape)
        out.append((q, answer))
    return out


def add_turns(conversations: list[dict[str, str]], extra: list[QA]) -> list[dict[str, str]]:
    """Append follow-up turns (no ``<image>`` in them) after the first exchange."""
    out = list(conversations)
    for q, a in extra:
        out += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return out
