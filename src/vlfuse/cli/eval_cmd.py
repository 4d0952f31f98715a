"""``vlfuse eval --model DIR [--task answers | retrieval] [--data FILE [--n N] | --seed N --n N] [--json]``.

``--data`` scores every record of the file (``--n`` caps it, and says so on stderr); its images are checked before
any is scored and must stay inside the data root unless ``--allow-outside-root``. Images are resized as the model's
config says (``image.resize``: pad, crop or stretch), which a line on stderr repeats.

``answers`` (default): accuracy per skill, exact match and VQAv2-style normalised match. ``retrieval``:
image-text recall@1/@5/@10 both ways on held-out captioned scenes, for a dual encoder (``--recipe clip``) or a
model with a pre-trained Q-Former (e.g. ``DIR/stages/pretrain`` of the blip2 recipe). ``zeroshot``: a dual
encoder classifies one-object scenes (no word strip) by ``--label`` (shape or color) from prompt ``--template`` s
(or a file's records, each label its first answer). A dual encoder answers ``answers`` questions by ranking statements.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vlfuse.cli.common import model_dir
from vlfuse.data.scenes import ScenesConfig
from vlfuse.evaluate import evaluate, print_table
from vlfuse.kinds import load_model
from vlfuse.train.config import SCENES_SIZES

RESIZE_WORDS = {"pad": "padded to a square with the mean colour", "crop": "short side resized, centre-cropped",
                "stretch": "stretched to a square"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy per skill on held-out data", description=__doc__)
    p.add_argument("--model", required=True, help="a folder written by `vlfuse train` (DIR/model) or save_pretrained")
    p.add_argument("--data", help="LLaVA-format JSON/JSONL to evaluate on (default: fresh built-in scenes)")
    p.add_argument("--image-folder", help="folder image paths in --data are relative to (default: its folder)")
    p.add_argument("--seed", type=int, default=1, help="scenes seed (default 1; training uses 0)")
    p.add_argument("--n", type=int, default=None,
                   help="scenes: how many to generate (default 800); --data: use only the first N records "
                        "(default: every record)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="accept image paths in --data that leave its folder / --image-folder (../, absolute, "
                        "symlinks); only for files you trust")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--task", choices=("answers", "retrieval", "zeroshot"), default="answers",
                   help="answers: accuracy per skill (default); retrieval: image-text recall (dual encoders, Q-Former "
                        "models); zeroshot: classification from prompt templates (dual encoders)")
    p.add_argument("--label", choices=("shape", "color"), default="shape", help="zeroshot on scenes: the class")
    p.add_argument("--template", action="append", help="zeroshot: a prompt with {} for the class (repeatable)")
    p.add_argument("--rerank", type=int, default=0, help="retrieval: re-score each query's top K by ITM (default 0)")
    p.add_argument("--json", action="store_true", help='print {"accuracy": {...}, "n": ...} as JSON')
    p.set_defaults(func=run)


def _scenes_config(folder: str) -> ScenesConfig:
    """The scenes config of the run that trained the model, if ``run.json`` is beside it."""
    from pathlib import Path

    from vlfuse.config import from_dict
    from vlfuse.train.config import DataConfig

    here = Path(folder).resolve()
    for run_file in (here.parent / "run.json", here.parent.parent / "run.json"):  # DIR/model, DIR/stages/NAME
        if run_file.is_file():
            return from_dict(DataConfig, json.loads(run_file.read_text())["data"]).scenes
    return ScenesConfig()


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: need at least 1")
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n {args.n}: need at least 1 (leave it out to use every record of --data)")
    model = load_model(model_dir(args.model))
    enc = model.encoder
    print(f"images: image.resize={model.config.image.resize} ({RESIZE_WORDS[model.config.image.resize]}) to "
          f"{enc.image_size}x{enc.image_size} px, from the model's config", file=sys.stderr)
    if args.task == "retrieval":
        return _retrieval(args, model)
    if args.task == "zeroshot":
        return _zeroshot(args, model)
    if args.data:
        records = _file_records(args)
    else:
        from vlfuse.data.scenes import generate

        records = generate(_scenes_config(model_dir(args.model)), _scenes_n(args), args.seed)
    result = evaluate(model, records, args.batch_size)
    if args.json:
        print(json.dumps({k: result[k] for k in ("accuracy", "accuracy_normalised", "n", "count")}))
    else:
        print_table(result)
    return 0


def _file_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every record of ``--data`` (the first ``--n`` if given), images checked before any is scored."""
    from vlfuse.data.dataset import read_file

    return read_file(args.data, args.image_folder, args.n, "--n", "eval", args.allow_outside_root)


def _scenes_n(args: argparse.Namespace) -> int:
    return SCENES_SIZES["eval"] if args.n is None else args.n


def _one_object_scenes(scenes: ScenesConfig, label: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` captioned scenes that hold one object (and no word), each labelled by its shape or colour."""
    import dataclasses

    from vlfuse.data.scenes import generate

    cfg = dataclasses.replace(scenes, skills={"caption": 1.0}, extra_turns=0, min_objects=1, max_objects=2)
    out: list[dict[str, Any]] = []
    for attempt in range(50):  # about half the scenes hold one object
        for r in generate(cfg, 4 * n, seed + 1000 * attempt):
            words = r["conversations"][-1]["value"].split()  # "a large red circle ."
            if len(words) == 5:
                label_word = words[3] if label == "shape" else words[2]
                out.append({**r, "conversations": [r["conversations"][0], {"from": "gpt", "value": label_word}]})
            if len(out) == n:
                return out
    raise ValueError(f"could not draw {n} one-object scenes; lower --n")


def _zeroshot(args: argparse.Namespace, model: Any) -> int:
    from vlfuse.evaluate_zeroshot import TEMPLATES, zeroshot

    if args.data:
        records = _file_records(args)
    else:
        records = _one_object_scenes(_scenes_config(model_dir(args.model)), args.label, _scenes_n(args), args.seed)
    result = zeroshot(model, records, tuple(args.template or TEMPLATES), args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"zero-shot classification of {result['n']} images into {len(result['classes'])} classes "
              f"({len(result['templates'])} templates): {100 * result['accuracy']:.1f}%")
        for name, acc in result["per_class"].items():
            print(f"  {name:<10} {100 * acc:5.1f}%")
    return 0


def _retrieval(args: argparse.Namespace, model: Any) -> int:
    import dataclasses

    from vlfuse.evaluate_retrieval import retrieval

    if args.data:
        records = _file_records(args)
    else:
        from vlfuse.data.scenes import generate

        scenes = _scenes_config(model_dir(args.model))
        captions = dataclasses.replace(scenes, skills={"caption": 1.0}, extra_turns=0)
        records = generate(captions, _scenes_n(args), args.seed)
    result = retrieval(model, records, args.batch_size, args.rerank)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"retrieval on {result['n']} held-out pairs (rerank {result['rerank']}):")
        for key in (k for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10") if k in result):
            print(f"  {key:<7} {100 * result[key]:5.1f}%")
    return 0
