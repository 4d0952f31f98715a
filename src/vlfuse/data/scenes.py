"""Built-in procedural scenes: coloured shapes on a dark canvas, an optional rendered word, and questions about them.

Objects sit in distinct cells of a coarse grid, jittered inside their cell with a 1-pixel margin, so they never
overlap; a word, when present, lives in a reserved strip at the bottom. Each answer family (``SKILLS``) is balanced
by drawing the answer first and then building a scene that has it. Record ``i`` of ``generate(cfg, n, seed)``
depends only on ``(cfg, seed, i)``, so any prefix of a larger set is the smaller set, pixel for pixel.
The grid geometry (``Layout``, ``layout``, ``cell_name``, the font) lives in ``scene_layout``; importable here too.
Shapes: each image is ``(H, W) = (image_size, image_size)`` RGB; ``multi`` records carry ``N = 2`` images."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from random import Random
from typing import Any

from PIL import Image, ImageDraw

from vlfuse.data.scene_dialogs import add_turns, followups
from vlfuse.data.scene_layout import COL_NAMES, ROW_NAMES, Layout, cell_name, font, layout, word_width

SKILLS = ("color", "shape", "count", "spatial", "exist", "ocr", "multi", "caption", "position")
RGB = {  # far apart in RGB so a 1-pixel sample names the colour
    "red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 80, 250), "yellow": (245, 225, 30),
    "purple": (160, 40, 220), "white": (250, 250, 250), "orange": (250, 140, 0), "cyan": (0, 220, 230),
}  # fmt: skip
SHAPES, SIZES = ("circle", "square", "triangle"), ("small", "large")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("cat", "dog", "sun", "box", "car", "hat", "cup", "pen", "map", "key", "bus", "egg")
BACKGROUND, STRIP, INK = (0, 0, 0), (48, 48, 48), (255, 255, 255)  # canvas, word strip, word
TEMPLATES = {  # every text a record holds; caption items are joined by " , " and closed by " ."
    "color": "what color is the {shape} ?", "shape": "what shape is the {color} object ?",
    "count": "how many objects are there ?", "count_shape": "how many {shape}s are there ?",
    "spatial": "where is the {color} {shape} relative to the {color2} {shape2} ?",
    "exist": "is there a {color} {shape} ?", "ocr": "what word is written ?",
    "multi": "which image has more {shape}s ?", "caption": "describe the image .",
    "position": "where is the {color} {shape} ?",
    "caption_item": "a {size} {color} {shape}", "caption_word": "the word is {word} .",
}  # fmt: skip
ANSWER_WORDS = ("yes", "no", "left", "right", "above", "below", "first", "second", ",", ".")
Spec = tuple[str, str]  # (shape, color)
Pins = dict[int, tuple[int, int, str]]  # spec index -> (row, col, jitter axis)
Plan = tuple[list[tuple[list[Spec], Pins]], str, str]  # (specs, pins) per image, question, answer


@dataclass(frozen=True)
class ScenesConfig:
    """What the scenes generator draws and asks, e.g. ``generate(ScenesConfig(skills={"color": 1.0}), 8, seed=0)``."""

    image_size: int = 32  # pixels per side; 16 is the smallest that keeps shapes recognisable
    min_objects: int = 1  # per image; question families raise it where they need more (spatial needs 2)
    max_objects: int = 6  # per image; at most the grid's cells (9 at 32 px, 6 when a word takes the bottom strip)
    colors: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "white")  # names from ``RGB``
    shapes: tuple[str, ...] = SHAPES
    sizes: tuple[str, ...] = SIZES
    word_prob: float = 0.0  # chance that a non-ocr single-image scene also shows a word (multi never does)
    words: tuple[str, ...] = WORDS  # lower-case letters; drawn upper-case
    # skill -> weight; "position" (an object's grid cell) is a training aid, off unless asked for
    skills: dict[str, float] = field(default_factory=lambda: {**dict.fromkeys(SKILLS, 1.0), "position": 0.0})
    extra_turns: int = 0  # follow-up QA turns about the same image (``scene_dialogs``); evaluation reads turn 1
    question_first: float = 0.0  # chance the question precedes its image, as in part of LLaVA-Instruct

    def __post_init__(self) -> None:
        for name, valid, least in (("colors", tuple(RGB), 2), ("shapes", SHAPES, 2), ("sizes", SIZES, 1)):
            given = getattr(self, name)
            if len(set(given)) != len(given) or len(given) < least or not set(given) <= set(valid):
                _invalid(name, given, f"need {least}+ distinct names from {list(valid)}")
        weights = list(self.skills.values())
        if not set(self.skills) <= set(SKILLS) or not weights or min(weights) < 0 or max(weights) <= 0:
            _invalid("skills", self.skills, f"need weights >= 0, at least one > 0, for names in {list(SKILLS)}")
        for name in ("word_prob", "question_first"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                _invalid(name, getattr(self, name), "use a probability in [0, 1]")
        if self.image_size < 16:
            _invalid("image_size", self.image_size, "shapes are unrecognisable below 16 px; use 16 or more")
        if not 0 <= self.min_objects <= self.max_objects:
            _invalid("min_objects", self.min_objects, f"need 0 <= min_objects <= max_objects ({self.max_objects})")
        limit, word = min(layout(self.image_size, False).cells, len(NUMBER_WORDS) - 1), layout(self.image_size, True)
        if not 2 <= self.max_objects <= limit:
            need = f"a {self.image_size} px image fits 2..{limit}; lower it or raise image_size"
            _invalid("max_objects", self.max_objects, need)
        if self.word_prob > 0 and (self.max_objects > word.cells or min(word.rows, word.cols) < 2):
            need = f"a word leaves a {word.rows}x{word.cols} grid, too small for {self.max_objects} objects or spatial"
            _invalid("word_prob", self.word_prob, need + "; raise image_size, lower max_objects or set word_prob = 0")
        bad = [w for w in self.words if not (w.isascii() and w.isalpha() and w.islower())]
        if self.word_prob > 0 or self.skills.get("ocr", 0) > 0:
            bad += [w for w in self.words if word_width(w, word.font_size) > self.image_size]
        if not self.words or bad:
            _invalid("words", self.words, f"need lower-case a-z words that fit {self.image_size} px (bad: {bad})")


def _invalid(name: str, value: Any, need: str) -> None:
    raise ValueError(f"scenes.{name} = {value!r}: {need}")


@dataclass(frozen=True)
class SceneObject:
    """One drawn shape: what it is, which grid cell holds it and its pixel box."""

    shape: str
    color: str
    size: str
    cell: tuple[int, int]  # (row, col) in the layout's grid
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, inclusive


@dataclass(frozen=True)
class Scene:
    """Everything one image shows; ``render`` turns it into pixels."""

    image_size: int
    objects: tuple[SceneObject, ...]
    word: str | None = None
    word_x: int = 0  # left pixel of the word's ink


@dataclass(frozen=True)
class Sample:
    """One question about one or two scenes, before rendering."""

    skill: str
    scenes: tuple[Scene, ...]
    question: str  # without the ``<image>`` lines
    answer: str


def render(scene: Scene) -> Image.Image:
    """Draw ``scene`` as a ``(H, W) = (image_size, image_size)`` RGB image at 1x (no antialiasing)."""
    s = scene.image_size
    image = Image.new("RGB", (s, s), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        if o.shape == "circle":
            draw.ellipse(o.box, fill=RGB[o.color])
        elif o.shape == "square":
            draw.rectangle(o.box, fill=RGB[o.color])
        else:  # triangle, pointing up
            draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=RGB[o.color])
    if scene.word is not None:
        lay = layout(s, True)
        draw.rectangle((0, s - lay.strip, s - 1, s - 1), fill=STRIP)
        draw.fontmode = "1"  # crisp 1-bit glyphs read better than grey antialiasing at 8 pixels
        ink_left, ink_top, _, _ = font(lay.font_size).getbbox(text := scene.word.upper())
        draw.text((scene.word_x - ink_left, s - lay.strip + 1 - ink_top), text, fill=INK, font=font(lay.font_size))
    return image


def _place(rng: Random, cfg: ScenesConfig, lay: Layout, specs: list[Spec], pins: Pins) -> tuple[SceneObject, ...]:
    """Objects for ``specs`` in distinct cells; ``pins[i] = (row, col, axis)`` fixes object ``i``'s cell and jitters it
    only along ``axis``, centring it across, so two objects pinned in one row (column) share a centre y (x)."""
    taken = {(r, c) for r, c, _ in pins.values()}
    free = [(r, c) for r in range(lay.rows) for c in range(lay.cols) if (r, c) not in taken]
    rng.shuffle(free)
    objects = []
    for i, (shape, color) in enumerate(specs):
        row, col, axis = pins[i] if i in pins else (*free.pop(), "")
        size = rng.choice(cfg.sizes)
        side = lay.small if size == "small" else lay.large
        centred = (lay.cell - side) // 2
        dx = centred if axis == "y" else rng.randint(1, lay.cell - side - 1)
        dy = centred if axis == "x" else rng.randint(1, lay.cell - side - 1)
        x0, y0 = lay.origin[0] + col * lay.cell + dx, lay.origin[1] + row * lay.cell + dy
        objects.append(SceneObject(shape, color, size, (row, col), (x0, y0, x0 + side - 1, y0 + side - 1)))
    return tuple(objects)


def _specs(rng: Random, n: int, shapes: tuple[str, ...], colors: tuple[str, ...]) -> list[Spec]:
    return [(rng.choice(shapes), rng.choice(colors)) for _ in range(n)]


def _with_count(rng: Random, cfg: ScenesConfig, shape: str, k: int, lo: int, hi: int) -> list[Spec]:
    """Exactly ``k`` objects of ``shape`` among ``max(lo, k)..hi`` objects."""
    others = tuple(s for s in cfg.shapes if s != shape)
    return _specs(rng, k, (shape,), cfg.colors) + _specs(rng, rng.randint(max(lo, k), hi) - k, others, cfg.colors)


def _plan(rng: Random, cfg: ScenesConfig, skill: str, lay: Layout) -> Plan:
    """``([(specs, pins)] per image, question, answer)`` for ``skill``; the answer is drawn first."""
    hi = min(cfg.max_objects, lay.cells)  # an ocr scene may fit fewer objects beside its word
    lo = min(cfg.min_objects, hi)
    shape, color = rng.choice(cfg.shapes), rng.choice(cfg.colors)
    if skill == "color":  # the asked shape is unique in the scene
        specs = _with_count(rng, cfg, shape, 1, lo, hi)
        return [(specs, {})], TEMPLATES["color"].format(shape=shape), specs[0][1]
    if skill == "shape":  # the asked colour is unique in the scene
        others = _specs(rng, rng.randint(max(lo, 1), hi) - 1, cfg.shapes, tuple(c for c in cfg.colors if c != color))
        return [([(shape, color), *others], {})], TEMPLATES["shape"].format(color=color), shape
    if skill == "count" and rng.random() < 0.5:
        n = rng.randint(lo, hi)
        return [(_specs(rng, n, cfg.shapes, cfg.colors), {})], TEMPLATES["count"], NUMBER_WORDS[n]
    if skill == "count":
        k = rng.randint(0, hi)
        specs = _with_count(rng, cfg, shape, k, lo, hi)
        return [(specs, {})], TEMPLATES["count_shape"].format(shape=shape), NUMBER_WORDS[k]
    if skill == "exist":
        present = rng.random() < 0.5
        pool = [(s, c) for s in cfg.shapes for c in cfg.colors if (s, c) != (shape, color)]
        specs = [(shape, color)] * present + [rng.choice(pool) for _ in range(rng.randint(max(lo, 1), hi) - present)]
        return [(specs, {})], TEMPLATES["exist"].format(shape=shape, color=color), "yes" if present else "no"
    if skill == "multi":  # two images, never a tie
        counts = rng.sample(range(hi + 1), 2)
        images = [(_with_count(rng, cfg, shape, k, lo, hi), {}) for k in counts]
        return images, TEMPLATES["multi"].format(shape=shape), "first" if counts[0] > counts[1] else "second"
    if skill == "position":  # a uniquely described object; its grid cell, named once the scene is placed
        others = [(s, c) for s in cfg.shapes for c in cfg.colors if (s, c) != (shape, color)]
        specs = [(shape, color), *(rng.choice(others) for _ in range(rng.randint(max(lo, 1), hi) - 1))]
        return [(specs, {})], TEMPLATES["position"].format(color=color, shape=shape), ""
    if skill in ("ocr", "caption"):  # any scene; the answer comes from it later
        return [(_specs(rng, rng.randint(max(lo, 1), hi), cfg.shapes, cfg.colors), {})], TEMPLATES[skill], ""
    # spatial: two uniquely described objects in one row (left / right) or one column (above / below)
    answer = rng.choice(("left", "right", "above", "below"))
    pairs = [(s, c) for s in cfg.shapes for c in cfg.colors]
    a, b = rng.sample(pairs, 2)
    others = [p for p in pairs if p not in (a, b)]
    specs = [a, b, *(rng.choice(others) for _ in range(rng.randint(max(lo, 2), hi) - 2))]
    horizontal = answer in ("left", "right")
    line = rng.randrange(lay.rows if horizontal else lay.cols)
    near, far = sorted(rng.sample(range(lay.cols if horizontal else lay.rows), 2))
    order = (near, far) if answer in ("left", "above") else (far, near)
    pins = {j: (line, k, "x") if horizontal else (k, line, "y") for j, k in enumerate(order)}
    return [(specs, pins)], TEMPLATES["spatial"].format(color=a[1], shape=a[0], color2=b[1], shape2=b[0]), answer


def caption(scene: Scene) -> str:
    """Objects left to right (top to bottom within a column), then the word if there is one."""
    objects = sorted(scene.objects, key=lambda o: o.cell[::-1])
    text = " , ".join(TEMPLATES["caption_item"].format(size=o.size, color=o.color, shape=o.shape) for o in objects)
    return f"{text} ." if scene.word is None else f"{text} . {TEMPLATES['caption_word'].format(word=scene.word)}"


def make_sample(cfg: ScenesConfig, seed: int, i: int) -> Sample:
    """Sample ``i`` of the stream drawn from ``seed`` (a pure function of its arguments)."""
    rng = Random(f"vlfuse-scenes-{seed}-{i}")
    skill = rng.choices(SKILLS, weights=[cfg.skills.get(s, 0) for s in SKILLS])[0]  # weight 0: never drawn
    word = rng.choice(cfg.words) if skill == "ocr" or (skill != "multi" and rng.random() < cfg.word_prob) else None
    lay = layout(cfg.image_size, word is not None)
    images, question, answer = _plan(rng, cfg, skill, lay)
    word_x = rng.randint(0, cfg.image_size - word_width(word, lay.font_size)) if word else 0
    scenes = tuple(Scene(cfg.image_size, _place(rng, cfg, lay, specs, pins), word, word_x) for specs, pins in images)
    answer = word if skill == "ocr" else caption(scenes[0]) if skill == "caption" else answer
    if skill == "position":
        answer = cell_name(scenes[0].objects[0].cell, lay)
    return Sample(skill, scenes, question, str(answer))


def generate(cfg: ScenesConfig, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` LLaVA-format records with in-memory PIL images; record ``i`` is the same whatever ``n`` is."""
    records = []
    for i in range(n):
        sample = make_sample(cfg, seed, i)
        images = [render(scene) for scene in sample.scenes]
        key, value = ("image", images[0]) if len(images) == 1 else ("images", images)
        prompt = "<image>\n" * len(images) + sample.question
        if len(images) == 1 and Random(f"vlfuse-order-{seed}-{i}").random() < cfg.question_first:
            prompt = f"{sample.question}\n<image>"
        turns = [{"from": "human", "value": prompt}, {"from": "gpt", "value": sample.answer}]
        if cfg.extra_turns and len(images) == 1:
            lay = layout(cfg.image_size, sample.scenes[0].word is not None)
            where = partial(cell_name, lay=lay) if cfg.skills.get("position", 0) > 0 else None
            extra = followups(Random(f"vlfuse-turns-{seed}-{i}"), sample.scenes[0], cfg.shapes, cfg.colors,
                              cfg.extra_turns, TEMPLATES, NUMBER_WORDS, where)
            turns = add_turns(turns, extra)
        records.append({"id": f"scenes-{seed}-{i}", key: value, "conversations": turns, "skill": sample.skill})
    return records


def scene_vocabulary(cfg: ScenesConfig) -> list[str]:
    """Every token (whitespace-split, lower-case, punctuation included) a question, answer or caption can hold."""
    words = {w for t in TEMPLATES.values() for w in t.split() if "{" not in w}
    words |= set(ANSWER_WORDS) | set(cfg.colors) | set(cfg.shapes)
    if cfg.skills.get("position", 0) > 0:
        words |= set(ROW_NAMES) | set(COL_NAMES)
    words |= {f"{s}s" for s in cfg.shapes}
    words |= set(cfg.sizes) | set(cfg.words) | set(NUMBER_WORDS[: cfg.max_objects + 1])
    return sorted(words)


def normalize_answer(text: str) -> str:
    """Lower-case, whitespace collapsed to single spaces, stripped."""
    return " ".join(text.lower().split())


def answer_matches(pred: str, gold: str, normalised: bool = False) -> bool:
    """Exact match (case and punctuation count; whitespace does not), or the VQAv2-style normalised match
    (``vlfuse.data.answers``): the scenes' answers are lower case, so both agree on them."""
    from vlfuse.data.answers import answer_matches as match

    return match(pred, gold, normalised)
