"""LLaVA-format files: a write/read round trip keeps pixels and conversations; bad files and records fail with
errors that name the file, the record and the fix, never with a raw PIL or JSON traceback.

Shapes: images are PIL RGB ``(H, W)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from vlfuse.data.llava_format import ImageLoadError, load_image, read_llava, write_llava
from vlfuse.data.scenes import ScenesConfig, generate

TURNS = [{"from": "human", "value": "<image>\nwhat color is the circle ?"}, {"from": "gpt", "value": "red"}]


def test_round_trip_keeps_pixels_conversations_and_extra_keys(tmp_path):
    records = generate(ScenesConfig(skills={"color": 1.0, "multi": 1.0}), 12, seed=0)
    path = write_llava(records, tmp_path / "out")
    assert path == tmp_path / "out" / "data.json"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    raw = json.loads(path.read_text())
    assert all(not Path(r.get("image", "x")).is_absolute() for r in raw)  # stored relative, so the folder can move
    back = read_llava(path)
    assert [r["id"] for r in back] == [r["id"] for r in records]
    for old, new in zip(records, back):
        assert new["conversations"] == old["conversations"] and new["skill"] == old["skill"]
        old_images = old.get("images") or [old["image"]]
        new_paths = new.get("images") or [new["image"]]
        assert len(new_paths) == len(old_images) and all(Path(p).is_absolute() for p in new_paths)
        for image, p in zip(old_images, new_paths):
            assert load_image(p).tobytes() == image.tobytes()
    multi = next(r for r in raw if r["skill"] == "multi")
    assert multi["images"] == [f"images/{multi['id']}-0.png", f"images/{multi['id']}-1.png"]


def test_image_folder_overrides_the_json_folder(tmp_path):
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "a.png")
    data = tmp_path / "meta" / "train.json"
    data.parent.mkdir()
    data.write_text(json.dumps([{"id": "x", "image": "a.png", "conversations": TURNS}]))
    (record,) = read_llava(data, image_folder=tmp_path)
    assert record["image"] == str((tmp_path / "a.png").resolve())
    assert load_image(record["image"]).getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ImageLoadError, match=r"file not found.*--image-folder"):
        load_image(read_llava(data)[0]["image"])  # default: relative to the JSON file's folder


def test_jsonl_and_records_without_images(tmp_path):
    text_only = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(text_only) + "\n\n" + json.dumps({"id": "b", **text_only}) + "\n")
    records = read_llava(path)
    assert [r["id"] for r in records] == ["0", "b"]
    assert all("image" not in r and "images" not in r for r in records)
    renamed = tmp_path / "d.json"  # JSONL content under a .json name is accepted too
    renamed.write_text(path.read_text())
    assert read_llava(renamed) == records


def test_write_accepts_paths_and_rejects_duplicate_ids(tmp_path):
    Image.new("RGB", (3, 3), (9, 9, 9)).save(tmp_path / "src.png")
    out = write_llava([{"id": "a/b", "image": str(tmp_path / "src.png"), "conversations": TURNS}], tmp_path / "o")
    (record,) = read_llava(out)
    assert Path(record["image"]).name == "a_b.png" and load_image(record["image"]).getpixel((2, 2)) == (9, 9, 9)
    with pytest.raises(ValueError, match="repeats an earlier id"):
        write_llava([{"id": "x", "conversations": TURNS}, {"id": "x", "conversations": TURNS}], tmp_path / "p")
    with pytest.raises(ValueError, match="record 0 has no 'id'"):
        write_llava([{"conversations": TURNS}], tmp_path / "q")


def test_load_image_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ImageLoadError, match=r"missing\.png'.*file not found; check the path"):
        load_image(tmp_path / "missing.png")
    corrupt = tmp_path / "x.png"
    corrupt.write_bytes(os.urandom(256))
    with pytest.raises(ImageLoadError, match=r"x\.png'.*not a readable image.*re-export"):
        load_image(corrupt)
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(ImageLoadError, match=r"notes\.txt'.*not a readable image"):
        load_image(text)
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(ImageLoadError, match=r"cut\.png'"):
        load_image(truncated)
    with pytest.raises(ImageLoadError, match="not a file"):
        load_image(tmp_path)
    assert issubclass(ImageLoadError, ValueError)


def test_load_image_converts_to_rgb(tmp_path):
    Image.new("RGBA", (2, 2), (5, 6, 7, 0)).save(tmp_path / "a.png")
    Image.new("L", (2, 2), 77).save(tmp_path / "g.png")
    assert load_image(tmp_path / "a.png").mode == "RGB" and load_image(tmp_path / "g.png").getpixel((0, 0)) == (77,) * 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"conversations": []}', r"not valid JSON: .* at line 1"),
        ('{"data": []}', "holds a JSON dict; expected a list"),
        ("[1]", "record 0: expected an object"),
        ('[{"id": "q"}]', r"record 0 \(id 'q'\): needs a non-empty 'conversations'"),
        ('[{"conversations": [{"from": "user", "value": "hi"}]}]', r"turn 0 .*'human' \| 'gpt'"),
        ('[{"conversations": [{"from": "gpt", "value": 3}]}]', "turn 0"),
        ('[{"image": 5, "conversations": [{"from": "human", "value": "<image>"}]}]', "'image' must be a path string"),
        ('[{"images": ["a", 2], "conversations": [{"from": "human", "value": "<image>"}]}]', "list of path strings"),
        ('[{"image": "a", "images": ["a"], "conversations": [{"from": "human", "value": "x"}]}]', "both 'image'"),
        ('[{"image": "a.png", "conversations": [{"from": "human", "value": "hi"}]}]', r"0 <image> placeholder\(s\)"),
    ],
)
def test_bad_records_name_the_file_record_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        read_llava(path)
    assert "bad.json" in str(err.value)


def test_bad_dataset_paths(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        read_llava(tmp_path / "nope.json")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"conversations": []}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_llava(bad)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="UTF-8"):
        read_llava(binary)
    good = tmp_path / "g.json"
    good.write_text("[]")
    with pytest.raises(ValueError, match="image folder"):
        read_llava(good, image_folder=tmp_path / "missing")
