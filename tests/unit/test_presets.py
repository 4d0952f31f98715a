"""The shipped presets agree with each other: the default recipe is the compare base's llava-mlp row."""

from __future__ import annotations

from vlfuse.cli.common import preset_path
from vlfuse.compare.designs import base_mapping, design_run, load_design
from vlfuse.config import load_config, to_dict
from vlfuse.data.scenes import layout
from vlfuse.train.config import RunConfig


def test_default_recipe_is_the_quick_base_with_the_llava_mlp_design():
    default = to_dict(load_config(RunConfig, preset_path("llava"), []))
    row = to_dict(design_run(load_design("llava-mlp"), base_mapping(True), seed=0, device="auto"))
    for stage in default["stages"] + row["stages"]:  # a policy lists what it freezes; an unlisted part trains
        stage["policy"] = {k: v for k, v in stage["policy"].items() if v != "train"}
    assert default == row


def test_quick_base_puts_one_grid_cell_in_each_patch():
    run = load_config(RunConfig, None, [], base=base_mapping(True))
    size, patch = run.model.encoder.image_size, run.model.encoder.patch_size
    lay = layout(size, False)
    assert size == run.data.scenes.image_size and (lay.rows, lay.cols) == (size // patch,) * 2
    for r in range(lay.rows):
        for c in range(lay.cols):  # a large object's box (1 px inside its cell) lies inside patch (r, c)
            x0 = lay.origin[0] + c * lay.cell + 1
            y0 = lay.origin[1] + r * lay.cell + 1
            x1, y1 = x0 + lay.large - 1, y0 + lay.large - 1
            assert (x0 // patch, x1 // patch, y0 // patch, y1 // patch) == (c, c, r, r), (r, c, size)
