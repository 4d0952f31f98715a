"""Whole-file checks when a LLaVA-format file is read: every bad image named in one error, records without an
answer refused, image paths that leave the data root refused unless allowed.

Shapes: images are PIL RGB ``(H, W)``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from vlfuse.data.llava_format import ImageLoadError, read_llava

ASK = {"from": "human", "value": "<image>\nwhat color is the circle ?"}


def record(rid: str, image: str | None = "img.png", answer: str | None = "red") -> dict:
    turns = [ASK if image is not None else {"from": "human", "value": "hi"}]
    if answer is not None:
        turns.append({"from": "gpt", "value": answer})
    return {"id": rid, "conversations": turns, **({"image": image} if image is not None else {})}


def write(folder: Path, records: list[dict], name: str = "data.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), "red").save(folder / "img.png")
    (folder / name).write_text(json.dumps(records))
    return folder / name


def test_every_bad_image_is_named_in_one_error(tmp_path):
    path = write(tmp_path, [record("ok")] + [record(f"gone{i}", f"missing{i}.png") for i in range(25)]
                 + [record("junk", "junk.png"), record("dir", "sub")])
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ImageLoadError) as e:
        read_llava(path)
    msg = str(e.value)
    assert msg.startswith(f"dataset {str(path)!r}: 27 image(s) cannot be read: ")
    assert "missing0.png' (record 1 (id 'gone0')): file not found" in msg
    assert "missing19.png" in msg and "missing20.png" not in msg and "... and 7 more" in msg  # first 20 shown
    assert "\n" not in msg and "--image-folder" in msg
    path = write(tmp_path / "b", [record("junk", "junk.png"), record("dir", "sub")])  # image folder: tmp_path
    with pytest.raises(ImageLoadError, match=r"2 image\(s\).*junk.png' \(record 0 \(id 'junk'\)\): not a readable "
                                             r"image.*sub' \(record 1 \(id 'dir'\)\): not a file"):
        read_llava(path, tmp_path)
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), "blue").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ImageLoadError, match=r"cut.png.*not a readable image"):
        read_llava(write(tmp_path / "c", [record("cut", "cut.png")]), tmp_path)
    assert len(read_llava(path, tmp_path, check_images=False)) == 2  # the caller may check the records it keeps


def test_a_truncated_jpeg_is_found_before_training(tmp_path):
    """PIL's verify() checks nothing in a JPEG, so a JPEG without its end marker is decoded to find the cut."""
    Image.effect_noise((64, 64), 60).convert("RGB").save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    good = write(tmp_path / "a", [record("whole", "whole.jpg")])
    assert len(read_llava(good, tmp_path)) == 1
    with pytest.raises(ImageLoadError, match=r"1 image\(s\).*cut.jpg' \(record 0 \(id 'cut'\)\): not a readable image"):
        read_llava(write(tmp_path / "b", [record("cut", "cut.jpg")]), tmp_path)


def test_records_without_an_answer_are_refused(tmp_path):
    path = write(tmp_path, [record("ok"), record("silent", answer=None), record("blank", answer="  "),
                            record("text", image=None, answer="")])
    with pytest.raises(ValueError, match=re.escape(
            "3 record(s) without an answer: record 1 (id 'silent') has no 'gpt' turn; record 2 (id 'blank') has "
            "an empty 'gpt' answer; record 3 (id 'text') has an empty 'gpt' answer. Give every record")):
        read_llava(path)


def test_paths_outside_the_data_root_are_refused_unless_allowed(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (4, 4), "blue").save(outside / "secret.png")
    data = tmp_path / "data"
    data.mkdir()
    (data / "link.png").symlink_to(outside / "secret.png")
    (data / "sub").mkdir()
    rows = [record("up", "../elsewhere/secret.png"), record("abs", str(outside / "secret.png")),
            record("link", "link.png"), record("fine", "sub/../img.png"), record("absin", str(data / "img.png"))]
    path = write(data, rows)
    with pytest.raises(ValueError) as e:
        read_llava(path)
    msg = str(e.value)
    assert f"3 image path(s) outside the data root {str(data.resolve())!r}" in msg
    assert "record 0 (id 'up') image '../elsewhere/secret.png' resolves to" in msg
    assert "record 1 (id 'abs')" in msg and "record 2 (id 'link') image 'link.png'" in msg
    assert "'fine'" not in msg and "'absin'" not in msg  # inside the root, however it is spelled
    assert "data.allow_outside_root=true" in msg and "--allow-outside-root" in msg
    allowed = read_llava(path, allow_outside_root=True)
    assert [Path(r["image"]) for r in allowed[:3]] == [(outside / "secret.png").resolve()] * 3
    # an image folder is the root instead: the same ../ path is inside when the folder is the parent
    (tmp_path / "img.png").write_bytes((data / "img.png").read_bytes())
    assert len(read_llava(write(data, [record("up", "elsewhere/secret.png")], "b.json"), tmp_path)) == 1
