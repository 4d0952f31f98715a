"""Images as the encoder's processor sees them: every PIL mode to RGB (16-bit scaled, alpha on white), and the
three resize modes (pad / crop / stretch) on PIL images and tensors, checked against ``transformers``' CLIP and
LLaVA image processors (plain classes, built in process; nothing is downloaded).

Shapes: ``C`` channels, ``H W`` pixels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_vlm
from vlfuse.data.llava_format import load_image
from vlfuse.data.transforms import ImageTransform, to_rgb

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def gradient(w: int, h: int) -> Image.Image:
    """A non-square RGB image whose every pixel differs, so a crop or resize at the wrong place shows."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x * 7 + y * 13) % 256], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def test_16_bit_grey_png_keeps_its_grey_levels(tmp_path):
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)  # black, dark, mid, white
    Image.fromarray(levels).save(tmp_path / "g16.png")  # written as 16-bit grey (mode I;16)
    with Image.open(tmp_path / "g16.png") as opened:
        assert opened.mode in ("I;16", "I")
    rgb = np.asarray(load_image(tmp_path / "g16.png"))
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 64, 128, 255] and (rgb == rgb[..., :1]).all()  # grey, not all white
    as_int = Image.fromarray(levels.astype(np.int32))  # mode I, as older Pillow opens 16-bit PNGs
    assert np.asarray(to_rgb(as_int))[0, :, 1].tolist() == [0, 64, 128, 255]


def test_every_mode_becomes_rgb():
    assert np.asarray(to_rgb(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))))[0, :, 0].tolist() == \
        [0, 128, 255]  # F in [0, 1]
    assert np.asarray(to_rgb(Image.fromarray(np.array([[10.0, 300.0]], np.float32))))[0, :, 0].tolist() == \
        [10, 255]  # F in 0..255, clipped
    assert to_rgb(Image.new("L", (2, 2), 77)).getpixel((0, 0)) == (77, 77, 77)
    assert to_rgb(Image.new("CMYK", (2, 2), (0, 255, 255, 0))).getpixel((0, 0)) == (255, 0, 0)
    half = to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 128))).getpixel((0, 0))  # half-transparent black on white
    assert all(abs(c - 127) <= 1 for c in half)
    assert to_rgb(Image.new("LA", (2, 2), (0, 0))).getpixel((0, 0)) == (255, 255, 255)  # transparent: white
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0  # index 0 is transparent
    assert [to_rgb(palette).getpixel((x, 0)) for x in (0, 1)] == [(255, 255, 255), (200, 100, 50)]
    for mode in ("1", "YCbCr", "I;16B", "RGBa", "La", "PA"):
        assert to_rgb(Image.new(mode, (3, 2))).mode == "RGB", mode


def test_pad_centres_the_image_on_the_mean_colour():
    t = ImageTransform(8, CLIP_MEAN, CLIP_STD, resize="pad")
    x = t(Image.new("RGB", (8, 4), (255, 255, 255)))  # wide: padded to 8 x 8, two rows above and below
    assert x.shape == (3, 8, 8)
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    white = (1 - mean) / std  # (3, 1, 1)
    fill = (torch.tensor([int(m * 255) for m in CLIP_MEAN])[:, None, None] / 255 - mean) / std  # LLaVA's colour
    torch.testing.assert_close(x[:, 2:6], white.expand(3, 4, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(x[:, [0, 1, 6, 7]], fill.expand(3, 4, 8), atol=1e-5, rtol=0)
    tall = t(torch.ones(3, 8, 4))  # tensors: padded left and right with the exact mean, so 0 once normalised
    assert tall.shape == (3, 8, 8) and tall[:, :, [0, 1, 6, 7]].abs().max() < 1e-6
    torch.testing.assert_close(tall[:, :, 2:6], white.expand(3, 8, 4), atol=1e-5, rtol=0)
    assert t(Image.new("RGB", (32, 16))).shape == (3, 8, 8)  # padded to 32 x 32, then resized


def test_crop_keeps_the_middle_and_stretch_keeps_everything():
    image = gradient(24, 8)
    crop = ImageTransform(8, (0.0,) * 3, (1.0,) * 3, resize="crop")
    stretch = ImageTransform(8, (0.0,) * 3, (1.0,) * 3, resize="stretch")
    middle = torch.from_numpy(np.array(image.crop((8, 0, 16, 8)))).permute(2, 0, 1).float() / 255  # (3, 8, 8)
    torch.testing.assert_close(crop(image), middle)  # short side already 8: a pure centre crop
    assert stretch(image).shape == (3, 8, 8) and stretch(image)[0, 0, 0] < 0.05 and stretch(image)[0, 0, -1] > 0.95
    tensor = middle.repeat(1, 1, 3)  # (3, 8, 24)
    torch.testing.assert_close(crop(tensor), middle)
    assert stretch(tensor).shape == (3, 8, 8)
    with pytest.raises(ValueError, match=r"'squash' is not one of pad, crop, stretch.*model.image.resize"):
        ImageTransform(8, (0.5,) * 3, (0.5,) * 3, resize="squash")


@pytest.mark.parametrize("size", [(37, 23), (20, 45)])
def test_crop_matches_clip_image_processor(size):
    try:
        from transformers import CLIPImageProcessorPil as CLIPProcessor
    except ImportError:  # transformers before the PIL / torchvision backend split
        from transformers import CLIPImageProcessor as CLIPProcessor
    image = gradient(*size)
    ref = CLIPProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    want = torch.as_tensor(np.asarray(ref(image, return_tensors="np")["pixel_values"][0]))  # (3, 16, 16)
    got = ImageTransform(16, CLIP_MEAN, CLIP_STD, resize="crop")(image)
    torch.testing.assert_close(got, want.float(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("edge", [16, 20])  # the short side before the crop: the crop's own, or larger
def test_pad_matches_llava_image_processor(edge):
    try:
        from transformers import LlavaImageProcessorPil as LlavaProcessor
    except ImportError:
        from transformers import LlavaImageProcessor as LlavaProcessor
    image = gradient(30, 18)
    ref = LlavaProcessor(do_pad=True, size={"shortest_edge": edge}, crop_size={"height": 16, "width": 16})
    want = torch.as_tensor(np.asarray(ref(image, return_tensors="np")["pixel_values"][0]))  # (3, 16, 16)
    got = ImageTransform(16, CLIP_MEAN, CLIP_STD, resize="pad", shortest_edge=edge)(image)
    torch.testing.assert_close(got, want.float(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("mode", ["pad", "crop", "stretch"])
def test_the_model_processor_uses_the_configured_mode(mode):
    model = tiny_vlm(image={"resize": mode})
    assert model.config.image.resize == mode
    transform = model.processor().transform
    wide = gradient(16, 8)
    want = ImageTransform(8, model.encoder.image_mean, model.encoder.image_std, resize=mode)(wide)
    assert transform.resize == mode and torch.equal(transform(wide), want)


def test_the_image_settings_are_saved_with_the_model(tmp_path):
    from vlfuse.model import VLM

    tiny_vlm(image={"resize": "crop", "resample": "bilinear", "shortest_edge": 10}).save_pretrained(str(tmp_path / "m"))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model"]["image"] == {"resize": "crop", "resample": "bilinear", "shortest_edge": 10, "rescale": 1 / 255}
    transform = VLM.from_pretrained(str(tmp_path / "m")).processor().transform
    assert (transform.resize, transform.resample, transform.edge) == ("crop", "bilinear", 10)
    meta["model"]["image"] = {"resize": "crop"}  # saved before the filter, edge and scale were kept: the defaults
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    transform = VLM.from_pretrained(str(tmp_path / "m")).processor().transform
    assert (transform.resize, transform.resample, transform.edge, transform.rescale) == ("crop", "bicubic", 8, 1 / 255)


@pytest.mark.parametrize(("resample", "code"), [("bilinear", 2), ("nearest", 0), ("lanczos", 1)])
def test_crop_with_a_larger_short_side_and_other_filters_matches_clip_image_processor(resample, code):
    try:
        from transformers import CLIPImageProcessorPil as CLIPProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as CLIPProcessor
    image = gradient(37, 23)
    ref = CLIPProcessor(size={"shortest_edge": 20}, crop_size={"height": 16, "width": 16}, resample=code)
    want = torch.as_tensor(np.asarray(ref(image, return_tensors="np")["pixel_values"][0]))  # (3, 16, 16)
    got = ImageTransform(16, CLIP_MEAN, CLIP_STD, resize="crop", resample=resample, shortest_edge=20)(image)
    torch.testing.assert_close(got, want.float(), atol=1e-4, rtol=0)


def test_bad_filters_and_edges_are_refused():
    with pytest.raises(ValueError, match=r"'cubic' is not one of nearest, lanczos.*model.image.resample"):
        ImageTransform(8, (0.5,) * 3, (0.5,) * 3, resample="cubic")
    with pytest.raises(ValueError, match="shortest_edge=6 is below the 8 px crop"):
        ImageTransform(8, (0.5,) * 3, (0.5,) * 3, resize="crop", shortest_edge=6)
    with pytest.raises(ValueError, match="'lanczos' has no torch equivalent for tensor images; give PIL"):
        ImageTransform(8, (0.5,) * 3, (0.5,) * 3, resample="lanczos")(torch.rand(3, 8, 8))
