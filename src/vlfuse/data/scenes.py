"""Built-in procedural scenes: coloured shapes on a grid (optionally a rendered word) and questions about them.

Deterministic: record ``i`` of ``generate(cfg, n, seed)`` depends only on ``(cfg, seed, i)``, so any prefix of a
larger set is the smaller set. Objects sit in distinct cells of a ``grid x grid`` layout (with jitter), which
keeps spatial relations unambiguous: a ``spatial`` question names two objects in one row (left / right) or one
column (above / below). Every answer family is balanced by choosing the answer first, then building the scene.
Records are LLaVA-format dicts with in-memory PIL images and a ``"skill"`` tag.
Shapes: images are ``image_size x image_size`` RGB.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

SKILLS = ("color", "shape", "count", "spatial", "exist", "ocr", "multi", "caption")
RGB = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 245), "yellow": (240, 220, 40),
       "purple": (170, 60, 220), "white": (245, 245, 245), "orange": (250, 140, 20), "cyan": (40, 220, 230)}
SHAPES = ("circle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("cat", "dog", "sun", "box", "car", "hat", "cup", "pen", "map", "key", "bus", "egg")
BACKGROUND = (0, 0, 0)
QUESTION_WORDS = ("what", "color", "is", "the", "shape", "object", "how", "many", "objects", "are", "there", "where",
                  "relative", "to", "a", "word", "written", "which", "image", "has", "more", "describe", ".", ",",
                  "?", "first", "second", "yes", "no", "left", "right", "above", "below")


@dataclass(frozen=True)
class ScenesConfig:
    image_size: int = 32  # pixels per side
    grid: int = 3  # objects sit in distinct cells of a grid x grid layout
    min_objects: int = 1
    max_objects: int = 6
    colors: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "white")
    shapes: tuple[str, ...] = SHAPES
    sizes: tuple[str, ...] = ("small", "large")
    word_prob: float = 0.0  # chance that a scene of another skill also shows a word
    words: tuple[str, ...] = WORDS
    skills: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SKILLS, 1.0))  # skill -> weight

    def __post_init__(self) -> None:
        unknown = sorted(set(self.skills) - set(SKILLS))
        if unknown:
            raise ValueError(f"scenes.skills: unknown skill(s) {unknown}; choose from {', '.join(SKILLS)}")
        if not any(w > 0 for w in self.skills.values()):
            raise ValueError(f"scenes.skills: all weights are zero in {self.skills}; give one a positive weight")
        if self.image_size < 16:
            raise ValueError(f"scenes.image_size is {self.image_size}; use 16 or more pixels")
        cells = self.grid * (self.grid - 1)  # a word takes one row of cells
        if not 1 <= self.min_objects <= self.max_objects <= min(cells, len(NUMBERS) - 1):
            raise ValueError(f"scenes: need 1 <= min_objects <= max_objects <= {min(cells, 9)} for grid "
                             f"{self.grid}, got {self.min_objects}..{self.max_objects}")
        bad = sorted(set(self.colors) - set(RGB)) + sorted(set(self.shapes) - set(SHAPES))
        if bad or len(self.colors) < 2 or len(self.shapes) < 2:
            raise ValueError(f"scenes: colors must be 2+ of {list(RGB)} and shapes 2+ of {list(SHAPES)}; "
                             f"unknown: {bad}")
        if not set(self.sizes) <= {"small", "large"} or not self.sizes or not self.words:
            raise ValueError(f"scenes: sizes must be a subset of small, large (got {self.sizes}) and words non-empty")


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str
    row: int
    col: int


# --- drawing ------------------------------------------------------------------------------------------------


def render(cfg: ScenesConfig, objects: list[Obj], word: str | None, rng: random.Random) -> Image.Image:
    """Draw ``objects`` in their cells and ``word`` in the bottom strip."""
    s, g = cfg.image_size, cfg.grid
    image = Image.new("RGB", (s, s), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cell = s // g
    for o in objects:
        side = max(4, round(cell * (0.9 if o.size == "large" else 0.55)))
        slack = cell - side
        x0 = o.col * cell + rng.randint(0, slack)
        y0 = o.row * cell + rng.randint(0, slack)
        box = (x0, y0, x0 + side - 1, y0 + side - 1)
        color = RGB[o.color]
        if o.shape == "circle":
            draw.ellipse(box, fill=color)
        elif o.shape == "square":
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([(x0 + (side - 1) / 2, y0), (x0, y0 + side - 1), (x0 + side - 1, y0 + side - 1)], fill=color)
    if word is not None:
        font = ImageFont.load_default(size=max(8, round(cell * 0.95)))
        draw.text((rng.randint(0, max(s // 4, 1)), (g - 1) * cell), word.upper(), fill=(255, 255, 255), font=font)
    return image


# --- scene building -----------------------------------------------------------------------------------------


def _place(rng: random.Random, cfg: ScenesConfig, specs: list[tuple[str, str]], rows: int,
           fixed: dict[int, tuple[int, int]] | None = None) -> list[Obj]:
    """Objects of the given ``(shape, color)`` in distinct random cells (``fixed`` pins some to cells)."""
    fixed = fixed or {}
    free = [(r, c) for r in range(rows) for c in range(cfg.grid) if (r, c) not in fixed.values()]
    rng.shuffle(free)
    out = []
    for i, (shape, color) in enumerate(specs):
        r, c = fixed[i] if i in fixed else free.pop()
        out.append(Obj(shape, color, rng.choice(cfg.sizes), r, c))
    return out


def _distinct_specs(rng: random.Random, cfg: ScenesConfig, n: int, avoid: set[tuple[str, str]] = frozenset(),
                    shapes: tuple[str, ...] | None = None, colors: tuple[str, ...] | None = None
                    ) -> list[tuple[str, str]]:
    """``n`` random ``(shape, color)`` pairs, none in ``avoid``; distinct from each other."""
    pool = [(s, c) for s in (shapes or cfg.shapes) for c in (colors or cfg.colors) if (s, c) not in avoid]
    return rng.sample(pool, n)


def _random_specs(rng: random.Random, cfg: ScenesConfig, n: int, shapes: tuple[str, ...] | None = None,
                  colors: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    return [(rng.choice(shapes or cfg.shapes), rng.choice(colors or cfg.colors)) for _ in range(n)]


def _rows(cfg: ScenesConfig, word: str | None) -> int:
    return cfg.grid - 1 if word is not None else cfg.grid


def _n_objects(rng: random.Random, cfg: ScenesConfig, low: int | None = None) -> int:
    return rng.randint(max(cfg.min_objects, low or 0), cfg.max_objects)


def _q_color(rng, cfg, rows):
    shape, color = rng.choice(cfg.shapes), rng.choice(cfg.colors)
    others = _random_specs(rng, cfg, _n_objects(rng, cfg) - 1, tuple(s for s in cfg.shapes if s != shape))
    return [(shape, color), *others], f"what color is the {shape} ?", color


def _q_shape(rng, cfg, rows):
    shape, color = rng.choice(cfg.shapes), rng.choice(cfg.colors)
    others = _random_specs(rng, cfg, _n_objects(rng, cfg) - 1, colors=tuple(c for c in cfg.colors if c != color))
    return [(shape, color), *others], f"what shape is the {color} object ?", shape


def _q_count(rng, cfg, rows):
    if rng.random() < 0.5:
        n = _n_objects(rng, cfg)
        return _random_specs(rng, cfg, n), "how many objects are there ?", NUMBERS[n]
    shape = rng.choice(cfg.shapes)
    k = rng.randint(0, cfg.max_objects)
    rest = rng.randint(max(cfg.min_objects - k, 0), cfg.max_objects - k)
    specs = _random_specs(rng, cfg, k, (shape,)) + _random_specs(rng, cfg, rest, tuple(s for s in cfg.shapes
                                                                                      if s != shape))
    return specs, f"how many {shape}s are there ?", NUMBERS[k]


def _q_exist(rng, cfg, rows):
    shape, color = rng.choice(cfg.shapes), rng.choice(cfg.colors)
    yes = rng.random() < 0.5
    n = _n_objects(rng, cfg)
    others = _distinct_specs(rng, cfg, n - 1 if yes else n, avoid={(shape, color)})
    specs = [(shape, color), *others] if yes else others
    return specs, f"is there a {color} {shape} ?", "yes" if yes else "no"


def _spatial(rng: random.Random, cfg: ScenesConfig, rows: int) -> tuple[list[Obj], str, str]:
    answer = rng.choice(("left", "right", "above", "below"))
    if answer in ("left", "right"):
        r = rng.randrange(rows)
        a, b = rng.sample(range(cfg.grid), 2)
        cells = {0: (r, a), 1: (r, b)}
        first_left = a < b
        answer = "left" if first_left else "right"
    else:
        c = rng.randrange(cfg.grid)
        a, b = rng.sample(range(rows), 2)
        cells = {0: (a, c), 1: (b, c)}
        answer = "above" if a < b else "below"
    n = _n_objects(rng, cfg, low=2)
    specs = _distinct_specs(rng, cfg, n)
    objects = _place(rng, cfg, specs, rows, cells)
    (s1, c1), (s2, c2) = specs[0], specs[1]
    return objects, f"where is the {c1} {s1} relative to the {c2} {s2} ?", answer


def _caption(objects: list[Obj], word: str | None) -> str:
    parts = [f"a {o.size} {o.color} {o.shape}" for o in sorted(objects, key=lambda o: (o.col, o.row))]
    text = " , ".join(parts) + " ."
    return text + f" the word is {word} ." if word is not None else text


QUESTIONS = {"color": _q_color, "shape": _q_shape, "count": _q_count, "exist": _q_exist}


def make_record(cfg: ScenesConfig, seed: int, i: int) -> dict[str, Any]:
    """Record ``i`` of the scenes drawn from ``seed``."""
    rng = random.Random(f"vlfuse-scenes-{seed}-{i}")
    names = [s for s in SKILLS if cfg.skills.get(s, 0) > 0]
    skill = rng.choices(names, weights=[cfg.skills[s] for s in names])[0]
    word = rng.choice(cfg.words) if skill == "ocr" or rng.random() < cfg.word_prob else None
    rows = _rows(cfg, word)
    images, prefix = None, "<image>\n"
    if skill in QUESTIONS:
        specs, question, answer = QUESTIONS[skill](rng, cfg, rows)
        objects = _place(rng, cfg, specs, rows)
    elif skill == "spatial":
        objects, question, answer = _spatial(rng, cfg, rows)
    elif skill == "ocr":
        objects = _place(rng, cfg, _random_specs(rng, cfg, _n_objects(rng, cfg)), rows)
        question, answer = "what word is written ?", word
    elif skill == "caption":
        objects = _place(rng, cfg, _random_specs(rng, cfg, _n_objects(rng, cfg)), rows)
        question, answer = "describe the image .", _caption(objects, word)
    else:  # multi: two images, never a tie
        images, question, answer = _multi(rng, cfg, rows, word)
        prefix = "<image>\n<image>\n"
    record: dict[str, Any] = {"id": f"scenes-{seed}-{i}"}
    if images is None:
        record["image"] = render(cfg, objects, word, rng)
    else:
        record["images"] = images
    record["conversations"] = [{"from": "human", "value": prefix + question}, {"from": "gpt", "value": answer}]
    record["skill"] = skill
    return record


def _multi(rng: random.Random, cfg: ScenesConfig, rows: int, word: str | None) -> tuple[list, str, str]:
    shape = rng.choice(cfg.shapes)
    a, b = rng.sample(range(0, cfg.max_objects + 1), 2)
    images = []
    for k in (a, b):
        rest = rng.randint(max(cfg.min_objects - k, 0), cfg.max_objects - k)
        specs = _random_specs(rng, cfg, k, (shape,)) + _random_specs(
            rng, cfg, rest, tuple(s for s in cfg.shapes if s != shape))
        images.append(render(cfg, _place(rng, cfg, specs, rows), word, rng))
    return images, f"which image has more {shape}s ?", "first" if a > b else "second"


def generate(cfg: ScenesConfig, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` records from ``seed`` (record ``i`` is the same whatever ``n`` is)."""
    return [make_record(cfg, seed, i) for i in range(n)]


def scene_vocabulary(cfg: ScenesConfig) -> list[str]:
    """Every word a question, answer or caption can contain (``<image>`` excluded)."""
    words = set(QUESTION_WORDS) | set(cfg.colors) | set(cfg.shapes) | {f"{s}s" for s in cfg.shapes}
    words |= set(cfg.sizes) | set(cfg.words) | set(NUMBERS[: cfg.max_objects + 1])
    return sorted(words)


def normalize_answer(text: str) -> str:
    return " ".join(text.lower().split())


def answer_matches(prediction: str, reference: str) -> bool:
    """Exact match after lower-casing and collapsing whitespace."""
    return normalize_answer(prediction) == normalize_answer(reference)
