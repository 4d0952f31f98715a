"""``vlfuse tokens`` counts equal transformers' own, per family, with the released checkpoints' settings.

For every family: 50 random sizes (half log-uniform over 1..2600 px per side, half uniform over 100..1600) plus
extremes (1x1, 2x2, 10x10, 4000x30, 30x4000, 1x150, ...). The reference for each family is built in
``tests/budget/hf_reference.py`` (processors constructed in code with the released settings and a tiny local
tokenizer, or the image processor + the processor's expansion code where a processor cannot be built without
torchvision; each builder's docstring says which). Where transformers raises for a size, ``count`` must raise a
``ValueError`` too. The slow variant adds 4000x3000 and 150 sizes up to 4000 px.
"""

from __future__ import annotations

import math
import random
import warnings

import pytest

from tests.budget.hf_reference import REFERENCES, gemma3
from vlfuse.budget import resolve
from vlfuse.budget.families.qwen_vl import smart_resize

EXTREMES = [(1, 1), (2, 2), (10, 10), (4000, 30), (30, 4000), (1, 150), (150, 1), (336, 336), (337, 335),
            (1023, 1025)]


def random_sizes(seed: int, n: int = 50, high: int = 2600) -> list[tuple[int, int]]:
    """Half log-uniform sides in ``1..high`` (aspect ratio at most 150, the extremes are listed apart), half
    uniform in 100..1600."""
    rng, log = random.Random(seed), []
    while len(log) < n // 2:
        w, h = (round(math.exp(rng.uniform(0, math.log(high)))) for _ in range(2))
        if max(w, h) <= 150 * min(w, h):
            log.append((w, h))
    uni = [(rng.randint(100, 1600), rng.randint(100, 1600)) for _ in range(n - n // 2)]
    return log + uni


def mismatches(family: str, sizes: list[tuple[int, int]]) -> list[str]:
    """Every size where our count and transformers' differ (both raising counts as agreeing)."""
    ref, r = REFERENCES[family](), resolve(family)
    bad = []
    for w, h in sizes:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = ref(w, h)
        except Exception as e:  # transformers rejects this size: so must we
            try:
                r.family.count(w, h, r.settings)
                bad.append(f"{w}x{h}: transformers raised {type(e).__name__}: {e}; we counted")
            except ValueError:
                pass
            continue
        ours = r.family.count(w, h, r.settings)
        got = {k: getattr(ours, k) for k in theirs}
        if got != theirs:
            bad.append(f"{w}x{h}: transformers {theirs}, vlfuse {got}")
    return bad


@pytest.mark.parametrize("family", sorted(REFERENCES))
def test_counts_match_transformers(family):
    sizes = [*EXTREMES, *random_sizes(seed=sum(map(ord, family)))]
    assert len(sizes) >= 50 + len(EXTREMES)
    bad = mismatches(family, sizes)
    assert not bad, f"{family}: {len(bad)} of {len(sizes)} sizes differ:\n" + "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(REFERENCES))
def test_counts_match_transformers_large(family):
    sizes = [(4000, 3000), (3000, 4000), *random_sizes(seed=7 + sum(map(ord, family)), n=150, high=4000)]
    bad = mismatches(family, sizes)
    assert not bad, f"{family}: {len(bad)} of {len(sizes)} sizes differ:\n" + "\n".join(bad)


def test_every_family_has_a_reference():
    from vlfuse.budget import list_families

    assert sorted(REFERENCES) == list_families()


def test_gemma3_pan_and_scan_crops_match():
    """With pan-and-scan on, the crops (and so the soft tokens) match; the sentence around them is approximate."""
    ref, r = gemma3(pan_and_scan=True), resolve("gemma3", overrides=["do_pan_and_scan=true"])
    for w, h in [*EXTREMES[2:], *random_sizes(seed=3, n=30)]:
        assert ref(w, h)["image_tokens"] == r.family.count(w, h, r.settings).image_tokens, (w, h)


def test_llava_onevision_multi_image_prompt_uses_base_view_only():
    from tests.budget.hf_reference import image, llava_onevision

    llava_onevision()  # build once
    r = resolve("llava-onevision")
    counts = [r.family.count(w, h, r.settings, images_in_prompt=2) for w, h in [(800, 600), (30, 4000)]]
    assert [c.tokens for c in counts] == [730, 730]
    import transformers as tf

    from tests.budget.hf_reference import tokenizer, without_video

    proc = without_video(tf.LlavaOnevisionProcessor)(
        image_processor=tf.LlavaOnevisionImageProcessorPil(size={"height": 384, "width": 384}),
        tokenizer=tokenizer(["<image>", "<video>"]), num_image_tokens=729, vision_feature_select_strategy="full")
    out = proc(images=[[image(800, 600), image(30, 4000)]], text=["<image><image>"])
    assert len(out["input_ids"][0]) == sum(c.tokens for c in counts)


def test_qwen_rejects_aspect_ratios_over_200_like_transformers():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 201, 28, 3136, 12845056)
    assert mismatches("qwen2-vl", [(201, 1), (1, 201), (4000, 1)]) == []
