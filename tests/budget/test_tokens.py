"""``vlfuse tokens``: the generic ViT numbers, settings and their sources, local model folders, files, errors."""

from __future__ import annotations

import argparse
import inspect
import json
import warnings

import pytest
import transformers as tf
from PIL import Image

from vlfuse.budget import FAMILIES, count_tokens, resolve
from vlfuse.cli import cost_cmd, tokens_cmd


def cli(argv: list[str]) -> int:
    """Run ``vlfuse <argv>`` through the subcommands' own parsers (as ``vlfuse.cli.app`` dispatches them)."""
    parser = argparse.ArgumentParser(prog="vlfuse")
    sub = parser.add_subparsers(dest="command", required=True)
    tokens_cmd.add_parser(sub)
    cost_cmd.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def tokens_json(capsys, *argv: str) -> dict:
    assert cli(["tokens", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("side", "tokens"), [(224, 256), (336, 576), (448, 1024), (672, 2304)])
def test_generic_vit_tokens_per_resolution(capsys, side, tokens):
    out = tokens_json(capsys, "--patch", "14", "--size", str(side), "--context", "4096")
    assert out["images"][0]["tokens"] == out["total"] == tokens
    assert out["images"][0]["size"] == [side, side]


@pytest.mark.parametrize(("tiles", "tokens", "percent"),
                         [(1, 1152, 28), (2, 1728, 42), (4, 2880, 70), (6, 4032, 98), (9, 5760, 141)])
def test_generic_tiles_plus_thumbnail_at_336(capsys, tiles, tokens, percent):
    out = tokens_json(capsys, "--patch", "14", "--size", "336x336", "--tiles", str(tiles), "--thumbnail",
                      "--context", "4096")
    assert out["total"] == tokens
    assert round(100 * out["context_share"]) == percent
    assert out["fits"] == (tokens <= 4096)
    assert out["images_that_fit"] == 4096 // tokens


def test_qwen2_vl_max_pixels_released_vs_class_default(capsys):
    """4000x3000: ~15k tokens with the released max_pixels (12845056), ~1.2k with the class default (1003520)."""
    assert tf.Qwen2VLImageProcessorPil().size["longest_edge"] == 1003520 == 28 * 28 * 1280  # the class default
    released = tokens_json(capsys, "--model", "qwen2-vl", "--size", "4000x3000")
    image = released["images"][0]
    assert (image["tokens"], image["image_tokens"], image["resized"]) == (15303, 15301, [4004, 2996])
    assert released["settings"]["max_pixels"] == {"value": 12845056,
                                                  "source": "released checkpoint Qwen/Qwen2-VL-7B-Instruct"}
    default = tokens_json(capsys, "--model", "qwen2-vl", "--size", "4000x3000", "--processor-defaults")
    assert default["images"][0]["image_tokens"] == 1230
    assert default["settings"]["max_pixels"]["value"] == 1003520
    assert default["settings"]["max_pixels"]["source"].startswith("processor default")
    ip = tf.Qwen2VLImageProcessorPil()  # transformers agrees on the class-default count
    assert ip.get_number_of_image_patches(3000, 4000) // 4 == 1230


def test_class_defaults_are_transformers_class_defaults():
    """What ``--processor-defaults`` switches to is what the transformers classes default to."""
    checks = {
        ("qwen2-vl", "min_pixels"): tf.Qwen2VLImageProcessorPil().size["shortest_edge"],
        ("idefics2", "do_image_splitting"): tf.Idefics2ImageProcessorPil().do_image_splitting,
        ("smolvlm", "longest_edge"): tf.SmolVLMImageProcessorPil().size["longest_edge"],
        ("smolvlm", "tile_size"): tf.SmolVLMImageProcessorPil().max_image_size["longest_edge"],
        ("smolvlm", "image_seq_len"): inspect.signature(tf.SmolVLMProcessor.__init__).parameters["image_seq_len"]
        .default,
        ("llava-1.5", "crop_size"): tf.CLIPImageProcessorPil().crop_size["height"],
        ("llava-1.5", "num_additional_image_tokens"): inspect.signature(tf.LlavaProcessor.__init__)
        .parameters["num_additional_image_tokens"].default,
        ("llava-next", "tile_size"): tf.LlavaNextImageProcessorPil().crop_size["height"],
        ("llama-3.2-vision", "tile_size"): tf.MllamaImageProcessorPil().size["height"],
    }
    for (family, key), value in checks.items():
        assert FAMILIES.get(family).cls.class_defaults[key] == value, (family, key)


def test_every_family_reports_its_settings_sources(capsys):
    for name in FAMILIES.names():
        out = tokens_json(capsys, "--model", name, "--size", "640x480", "--text-tokens", "100")
        cls = FAMILIES.get(name).cls
        for key, v in out["settings"].items():
            expected = f"processor default ({cls.processor})" if key in cls.unreleased else \
                f"released checkpoint {cls.checkpoint}"
            assert v["source"] == expected, (name, key)
        image = out["images"][0]
        assert image["tokens"] == image["image_tokens"] + image["special_tokens"] + image["row_break_tokens"]
        assert out["total"] == 100 + image["tokens"]
        assert out["context"] == out["settings"]["context"]["value"]
        assert out["context_share"] == pytest.approx(out["total"] / out["context"])
        assert cli(["tokens", "--model", name, "--size", "640x480"]) == 0  # the table renders too
        assert f"{name}: context" in capsys.readouterr().out


def test_llama_vision_reports_text_and_cross_attention_apart(capsys):
    out = tokens_json(capsys, "--model", "llama-3.2-vision", "--size", "1000x500", "--text-tokens", "10")
    image = out["images"][0]
    assert image["tokens"] == 1 and out["total"] == 11
    assert image["tiles"] == 2 and image["grid"] == [2, 1]  # 2 x 1 tiles of 560 px
    assert image["cross_attention_tokens"] == 2 * 1601 and image["cross_attention_kv"] == 4 * 1601


def test_set_overrides_and_context_flag(capsys):
    out = tokens_json(capsys, "--model", "qwen2.5-vl", "--size", "4000x3000", "--set", "max_pixels=1003520",
                      "--context", "8192")
    assert out["images"][0]["image_tokens"] == 1230
    assert out["settings"]["max_pixels"] == {"value": 1003520, "source": "--set"}
    assert out["settings"]["context"] == {"value": 8192, "source": "--context"}


def test_local_model_folder_uses_its_exact_settings(tmp_path, capsys):
    """A Qwen2.5-VL folder with custom min/max pixels: our count equals the image processor loaded from it."""
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2_5_vl", "vision_config": {"patch_size": 14, "spatial_merge_size": 2},
        "text_config": {"max_position_embeddings": 32000}}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "min_pixels": 200704, "max_pixels": 401408,
        "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}))
    out = tokens_json(capsys, "--model", str(tmp_path), "--size", "4000x3000", "--size", "20x20")
    assert out["model"] == "qwen2.5-vl" and out["context"] == 32000
    assert out["settings"]["max_pixels"]["source"] == f"local {tmp_path / 'preprocessor_config.json'} (max_pixels)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ip = tf.Qwen2VLImageProcessorPil.from_pretrained(str(tmp_path))
    expected = [ip.get_number_of_image_patches(h, w) // 4 for w, h in [(4000, 3000), (20, 20)]]
    assert [im["image_tokens"] for im in out["images"]] == expected


def test_local_folder_with_nested_processor_config(tmp_path):
    """SmolVLM-256M-style settings (512 px tiles, 64 tokens) read from a processor_config.json that nests the
    image processor, as newer transformers save it."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "smolvlm", "text_config": {}}))
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_seq_len": 64, "image_processor": {
        "size": {"longest_edge": 2048}, "max_image_size": {"longest_edge": 512}}}))
    r = resolve(str(tmp_path))
    assert (r.settings.longest_edge, r.settings.tile_size, r.settings.image_seq_len) == (2048, 512, 64)
    assert r.family.count(1024, 1024, r.settings).tokens == 17 * 64 + 2 * 16 + 3 + 4  # 4x4 tiles + global


def test_image_file_sizes_and_errors(tmp_path, capsys):
    Image.new("RGB", (640, 480)).save(tmp_path / "a.png")
    out = tokens_json(capsys, "--model", "qwen2-vl", "--image", str(tmp_path / "a.png"))
    assert out["images"][0]["size"] == [640, 480]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"--image .*bad.png: PIL cannot read it"):
        cli(["tokens", "--model", "qwen2-vl", "--image", str(tmp_path / "bad.png")])
    with pytest.raises(FileNotFoundError, match="no such file"):
        cli(["tokens", "--model", "qwen2-vl", "--image", str(tmp_path / "missing.png")])


@pytest.mark.parametrize(("argv", "match"), [
    (["--model", "llava-2", "--size", "336"], "neither a family nor a model folder; families are: blip2"),
    (["--model", "qwen2-vl", "--size", "33x"], "expected WxH"),
    (["--model", "qwen2-vl", "--patch", "14", "--size", "336"], "exactly one of --model"),
    (["--model", "qwen2-vl"], "no image"),
    (["--model", "qwen2-vl", "--size", "336", "--set", "max_pixel=5"], "no setting 'max_pixel'; settings are"),
    (["--model", "qwen2-vl", "--size", "336", "--set", "max_pixels=lots"], "must be a int"),
    (["--patch", "14", "--size", "10x10"], "holds no whole 14 px patch"),
    (["--model", "qwen2-vl", "--size", "4000x1"], "aspect ratios above 200"),
])
def test_errors_name_the_value_and_the_fix(argv, match):
    with pytest.raises(ValueError, match=match):
        cli(["tokens", *argv])


def test_videos():
    """Qwen2-VL: frames padded to pairs share a grid (video processor defaults, by hand: 640x480 -> 644x476 at
    max 602112 px -> 23 x 17 tokens); LLaVA-OneVision: transformers' own video count."""
    r = resolve("qwen2-vl")
    video = r.family.count_video(640, 480, 7, r.settings)
    assert (video.grid, video.image_tokens, video.tokens) == ((23, 17), 4 * 23 * 17, 4 * 23 * 17 + 2)
    from tests.budget.hf_reference import tokenizer, without_video

    proc = without_video(tf.LlavaOnevisionProcessor)(
        image_processor=tf.LlavaOnevisionImageProcessorPil(), tokenizer=tokenizer(["<image>", "<video>"]),
        num_image_tokens=729, vision_feature_select_strategy="full")
    r = resolve("llava-onevision")
    expected = proc._get_num_multimodal_tokens(video_sizes=[(8, 480, 640)])["num_video_tokens"][0]
    assert r.family.count_video(640, 480, 8, r.settings).tokens == expected == 8 * 196 + 1
    fallback = count_tokens("paligemma", [(640, 480)])[0].scaled(3, "x")
    assert fallback.tokens == 3 * 256 and fallback.frames == 3
