"""LLaVA-format datasets on disk: a JSON list (or JSONL) of records whose images are files next to it.

A record is ``{"id": ..., "image": "images/x.png" (or "images": [...], or neither), "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}], ...}``, the layout of LLaVA's own
data, so a user's dataset works unchanged. ``read_llava`` validates every record (``llava_checks``: answers, image
paths inside the data root, image headers) and resolves image paths but loads no pixels; ``load_image`` decodes
one file when it is needed and turns every failure into ``ImageLoadError``.
Shapes: images are PIL RGB ``(H, W)``; nothing here is a tensor.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from vlfuse.data.llava_checks import PATH_HINT, ImageLoadError, check_answers, check_image_files, resolve_images
from vlfuse.data.transforms import to_rgb

ROLES = ("human", "gpt")
IMAGE_TOKEN = "<image>"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # characters replaced in image file names derived from record ids


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as a fully decoded RGB image (``to_rgb``: 16-bit scaled, alpha on white), so a corrupt file
    fails here and not inside a training batch."""
    p = Path(path)
    if not p.is_file():
        why = "not a file" if p.exists() else "file not found"
        raise ImageLoadError(f"cannot read image {str(p)!r}: {why}; {PATH_HINT}")
    try:
        with Image.open(p) as image:
            image.load()
            rgb = to_rgb(image)
            return rgb.copy() if rgb is image else rgb  # closing the file frees the opened image's pixels
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        # PIL reports unknown formats, truncated data and bad headers through several exception types.
        raise ImageLoadError(
            f"cannot read image {str(p)!r}: not a readable image ({type(e).__name__}: {e}); "
            "re-export it as PNG or JPEG, or drop the record"
        ) from None


def _as_image(value: Any, record_id: str) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, Path)):
        return load_image(value)
    raise TypeError(f"record {record_id!r}: an image must be a PIL image or a path, got {type(value).__name__}")


def write_llava(records: list[dict[str, Any]], out_dir: str | Path, name: str = "data.json") -> Path:
    """Save records as ``out_dir/name`` (JSON list) with their images as PNGs under ``out_dir/images/``.

    Images may be PIL images or paths (re-saved as PNG). Image paths in the JSON are relative to ``out_dir``;
    keys other than ``image``/``images`` (``skill``, ...) are kept. The JSON file appears atomically.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, seen = [], set()
    for index, record in enumerate(records):
        if "id" not in record:
            raise ValueError(f"record {index} has no 'id'; give every record a unique id (it names the image files)")
        stem = _UNSAFE.sub("_", str(record["id"]))
        if stem in seen:
            raise ValueError(f"record {index}: id {record['id']!r} repeats an earlier id; ids must be unique")
        seen.add(stem)
        row = {k: v for k, v in record.items() if k not in ("image", "images")}
        if record.get("images") is not None:
            row["images"] = [f"images/{stem}-{j}.png" for j in range(len(record["images"]))]
            for rel, value in zip(row["images"], record["images"]):
                _as_image(value, stem).save(out / rel)
        elif record.get("image") is not None:
            row["image"] = f"images/{stem}.png"
            _as_image(record["image"], stem).save(out / row["image"])
        rows.append(row)
    try:
        text = json.dumps(rows, indent=1)
    except TypeError as e:
        raise ValueError(
            f"records hold a value JSON cannot store ({e}); keep extra keys to str/int/float/list/dict"
        ) from None
    target = out / name
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=out, prefix=f".{name}.", suffix=".tmp", delete=False
    ) as f:
        f.write(text)
    os.replace(f.name, target)
    return target


def _parse(path: Path) -> list[Any]:
    """The records of a JSON list or a JSONL file, with errors that name the file and line."""
    if not path.is_file():
        why = "file not found" if not path.exists() else "not a file"
        raise ValueError(f"cannot read dataset {str(path)!r}: {why}; pass a LLaVA-format .json or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read dataset {str(path)!r} ({e}); it must be a readable UTF-8 text file") from None
    if path.suffix != ".jsonl":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if not (e.msg == "Extra data" and text.lstrip().startswith("{")):  # else: JSONL under another name
                raise ValueError(
                    f"dataset {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}, column "
                    f"{e.colno}; fix the file or export it again"
                ) from None
        else:
            if not isinstance(data, list):
                raise ValueError(
                    f"dataset {str(path)!r} holds a JSON {type(data).__name__}; expected a list of records"
                )
            return data
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"dataset {str(path)!r} line {number} is not valid JSON: {e.msg}; "
                    "JSONL needs one record object per line"
                ) from None
    return records


def _check(record: Any, index: int, path: Path) -> None:
    """Raise ``ValueError`` naming the record (index and id) and what is wrong with it."""
    where = f"dataset {str(path)!r} record {index}"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object with 'conversations', got {type(record).__name__}")
    where += f" (id {record['id']!r})" if "id" in record else ""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where}: needs a non-empty 'conversations' list of {{'from': ..., 'value': ...}} turns")
    for t, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(turn.get("value"), str):
            raise ValueError(
                f"{where}: turn {t} is {turn!r}; each turn must be {{'from': 'human' | 'gpt', 'value': str}}"
            )
    image, images = record.get("image"), record.get("images")
    if image is not None and images is not None:
        raise ValueError(f"{where}: has both 'image' and 'images'; keep one (a list for several images)")
    if image is not None and not isinstance(image, str):
        raise ValueError(f"{where}: 'image' must be a path string, got {image!r}")
    if images is not None and not (isinstance(images, list) and all(isinstance(x, str) for x in images)):
        raise ValueError(f"{where}: 'images' must be a list of path strings, got {images!r}")
    n_images = len(images) if images is not None else int(image is not None)
    n_tokens = sum(turn["value"].count(IMAGE_TOKEN) for turn in turns)
    if n_tokens != n_images:
        raise ValueError(
            f"{where}: {n_tokens} {IMAGE_TOKEN} placeholder(s) for {n_images} image(s); put one "
            f"{IMAGE_TOKEN} in the text for each image"
        )


def read_llava(path: str | Path, image_folder: str | Path | None = None, *, allow_outside_root: bool = False,
               check_images: bool = True) -> list[dict[str, Any]]:
    """Validated records from a LLaVA-format JSON/JSONL file, image paths made absolute (pixels are not loaded).

    Every record is checked before any is used (``llava_checks``): its layout, that it has an answer, that its
    image paths stay inside the data root, and (``check_images``) that each image file opens.

    Args:
        path: the ``.json`` list or ``.jsonl`` file.
        image_folder: the data root relative image paths start from; default the JSON file's folder.
        allow_outside_root: accept image paths that resolve outside the data root (``../``, absolute, symlinks).
        check_images: open every image's header (``False``: the caller checks the records it keeps).
    """
    p = Path(path)
    root = Path(image_folder) if image_folder is not None else p.parent
    if image_folder is not None and not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} is not a folder; pass the folder the image paths start from")
    records = []
    for index, record in enumerate(_parse(p)):
        _check(record, index, p)
        records.append({"id": str(index), **record})
    check_answers(records, p)
    resolve_images(records, root, p, allow_outside_root)
    if check_images:
        check_image_files(records, p)
    return records
