"""Whole-file checks of LLaVA-format records, run when a file is read, so a bad file fails before training step 1.

Every record needs an answer; every image path must stay inside the data root (the JSON file's folder, or the
image folder) unless the user allows otherwise; every image file must open. Each check names all the offending
records in one error (how many, and the first ``SHOWN`` with the reason each), so one pass over the file fixes it.
Shapes: none; nothing here decodes pixels (``Image.verify`` reads headers and checksums only).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

SHOWN = 20  # offending records listed in one error; the rest are counted
PATH_HINT = "check the path; relative paths in a LLaVA JSON resolve against the JSON file's folder or --image-folder"
OUTSIDE_FLAG = "data.allow_outside_root=true (vlfuse eval --allow-outside-root)"
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


class ImageLoadError(ValueError):
    """An image file is missing, unreadable or not an image."""


def where(index: int, record: dict[str, Any]) -> str:
    """``record 3 (id 'a')``: how errors name a record (its position in the file and its id)."""
    return f"record {index} (id {record['id']!r})"


def problems_message(path: Path, what: str, problems: Sequence[str], fix: str) -> str:
    """One line: the count, the first ``SHOWN`` problems, how many more, and the fix."""
    shown = "; ".join(problems[:SHOWN])
    more = f"; ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return f"dataset {str(path)!r}: {len(problems)} {what}: {shown}{more}. {fix}"


def check_answers(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Raise ``ValueError`` naming every record with no ``gpt`` turn or an empty answer (they would train on no
    target at all, a NaN loss)."""
    problems = []
    for index, record in enumerate(records):
        answers = [t["value"] for t in record["conversations"] if t["from"] == "gpt"]
        if not answers:
            problems.append(f"{where(index, record)} has no 'gpt' turn")
        elif not all(a.strip() for a in answers):
            problems.append(f"{where(index, record)} has an empty 'gpt' answer")
    if problems:
        raise ValueError(problems_message(path, "record(s) without an answer", problems,
                                          "Give every record a 'gpt' turn with a non-empty 'value', or drop them"))


def resolve_images(records: list[dict[str, Any]], root: Path, path: Path, allow_outside_root: bool) -> None:
    """Make every image path absolute (symlinks resolved), in place; raise ``ValueError`` naming every path that
    leaves ``root`` (``../``, an absolute path elsewhere, a symlink out) unless ``allow_outside_root``."""
    base = root.resolve()
    problems = []
    for index, record in enumerate(records):
        for key in ("image", "images"):
            value = record.get(key)
            if value is None:
                continue
            resolved = [(root / x).resolve() for x in ([value] if key == "image" else value)]
            for raw, full in zip([value] if key == "image" else value, resolved):
                if not allow_outside_root and not full.is_relative_to(base):
                    problems.append(f"{where(index, record)} image {raw!r} resolves to {str(full)!r}")
            record[key] = str(resolved[0]) if key == "image" else [str(x) for x in resolved]
    if problems:
        raise ValueError(problems_message(
            path, f"image path(s) outside the data root {str(base)!r}", problems,
            f"Keep images under the data root (the JSON file's folder, or the image folder), or pass {OUTSIDE_FLAG} "
            "if you trust this file"))


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable image (header and checksums only, no pixels kept), or ``None``."""
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a file"
    try:
        with Image.open(path) as image:
            kind = image.format
            image.verify()
        if kind == "JPEG" and not _ends_with_eoi(path):  # verify() checks nothing in a JPEG: decode a suspect one
            with Image.open(path) as image:
                image.load()
    except _IMAGE_ERRORS as e:  # PIL reports unknown formats, truncation and bad headers through several types
        return f"not a readable image ({type(e).__name__}: {e})"
    return None


def _ends_with_eoi(path: Path) -> bool:
    """A complete JPEG ends with the end-of-image marker ``FF D9`` (maybe followed by padding)."""
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - 64, 0))
        tail = f.read().rstrip(b"\x00\r\n ")
    return tail.endswith(b"\xff\xd9")


def check_image_files(records: Sequence[dict[str, Any]], path: Path, workers: int = 8) -> None:
    """Raise ``ImageLoadError`` naming every missing or unreadable image of ``records`` (absolute paths)."""
    users: dict[str, str] = {}  # image path -> the first record that uses it
    for index, record in enumerate(records):
        for image in record.get("images") or ([record["image"]] if record.get("image") is not None else []):
            users.setdefault(image, where(index, record))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # file opens wait on the disk, not the CPU
        reasons = list(pool.map(lambda p: image_problem(Path(p)), users))
    problems = [f"{p!r} ({users[p]}): {why}" for p, why in zip(users, reasons) if why is not None]
    if problems:
        raise ImageLoadError(problems_message(
            path, "image(s) cannot be read", problems,
            f"Fix or re-export them as PNG/JPEG, or drop those records; {PATH_HINT}"))
