"""LLaVA-format datasets on disk: a JSON (or JSONL) list of records, images as paths beside it.

``{"id": ..., "image": "images/x.png" | "images": [...], "conversations": [{"from": "human", "value":
"<image>\\n..."}, {"from": "gpt", "value": "..."}]}`` — the format of LLaVA's own data, so a user's dataset
works unchanged. Images load lazily, with ``ImageLoadError`` naming the file and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError


class ImageLoadError(ValueError):
    """An image file is missing, unreadable or not an image."""


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as an RGB image, fully decoded (a corrupt file fails here, not in a later batch)."""
    p = Path(path)
    if not p.is_file():
        raise ImageLoadError(f"cannot read image {str(p)!r}: file not found; check the path (relative paths in a "
                             "LLaVA JSON are resolved against its folder or --image-folder)")
    try:
        with Image.open(p) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"cannot read image {str(p)!r}: not a readable image ({type(e).__name__}: {e}); "
                             "re-export it as PNG or JPEG") from None


def write_llava(records: list[dict[str, Any]], out_dir: str | Path, name: str = "data.json") -> Path:
    """Save each record's PIL image(s) as PNG under ``out_dir/images/`` and the records as JSON (atomically)."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in ("image", "images")}
        rid = str(r["id"])
        if r.get("images") is not None:
            paths = [f"images/{rid}-{j}.png" for j in range(len(r["images"]))]
            for path, im in zip(paths, r["images"]):
                im.save(out / path)
            row["images"] = paths
        elif r.get("image") is not None:
            r["image"].save(out / f"images/{rid}.png")
            row["image"] = f"images/{rid}.png"
        rows.append(row)
    target = out / name
    tmp = out / f".{name}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, target)
    return target


def _parse(path: Path) -> list[Any]:
    if not path.is_file():
        raise ValueError(f"dataset {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"dataset {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, list):
        raise ValueError(f"dataset {str(path)!r} must hold a JSON list of records, got {type(data).__name__}")
    return data


def _check(record: Any, index: int, path: Path) -> None:
    where = f"{str(path)!r} record {index}" + (f" (id {record.get('id')!r})" if isinstance(record, dict) else "")
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where}: needs a non-empty 'conversations' list")
    for t in turns:
        if not isinstance(t, dict) or t.get("from") not in ("human", "gpt") or not isinstance(t.get("value"), str):
            raise ValueError(f"{where}: each turn must be {{'from': 'human' | 'gpt', 'value': str}}, got {t!r}")
    image, images = record.get("image"), record.get("images")
    if image is not None and not isinstance(image, str):
        raise ValueError(f"{where}: 'image' must be a path string, got {image!r}")
    if images is not None and not (isinstance(images, list) and all(isinstance(x, str) for x in images)):
        raise ValueError(f"{where}: 'images' must be a list of path strings, got {images!r}")


def read_llava(path: str | Path, image_folder: str | Path | None = None) -> list[dict[str, Any]]:
    """Records with image paths made absolute (against ``image_folder``, default the file's folder)."""
    p = Path(path)
    root = Path(image_folder) if image_folder is not None else p.parent
    records = _parse(p)
    out = []
    for i, r in enumerate(records):
        _check(r, i, p)
        r = dict(r)
        r.setdefault("id", str(i))
        if r.get("image") is not None:
            r["image"] = str((root / r["image"]).resolve())
        if r.get("images") is not None:
            r["images"] = [str((root / x).resolve()) for x in r["images"]]
        out.append(r)
    return out
