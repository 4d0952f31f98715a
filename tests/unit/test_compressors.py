"""Token compressors: perceiver, pixelshuffle, cabstractor (and avgpool): token counts, frames, locality, sizes."""

from __future__ import annotations

import pytest
import torch

from vlfuse.compare.designs import base_mapping, design_run, load_design
from vlfuse.connectors.cabstractor import CAbstractorConfig, CAbstractorConnector
from vlfuse.connectors.perceiver import PerceiverConfig, PerceiverResampler
from vlfuse.connectors.pixel_shuffle import PixelShuffleConfig, PixelShuffleConnector, pixel_shuffle
from vlfuse.connectors.pooling import AvgPoolConfig, AvgPoolConnector
from vlfuse.registry import CONNECTORS
from vlfuse.train.loop import build_model


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", CONNECTORS.names())
def test_every_connector_yields_num_tokens_tokens_of_the_llm_width(name):
    entry = CONNECTORS.get(name)
    c = entry.cls(entry.config_cls(), in_dim=16, out_dim=24).eval()
    for patches in (36, 144):  # 6 x 6 and 12 x 12 grids: divisible by the default shuffle ratio 2
        out = c(torch.randn(2, patches, 16))
        assert out.shape == (2, c.num_tokens(patches), 24)


@pytest.mark.parametrize("connector", [
    PerceiverResampler(PerceiverConfig(n_latents=5, depth=1), in_dim=16, out_dim=24),
    AvgPoolConnector(AvgPoolConfig(grid=3), in_dim=16, out_dim=24),
    CAbstractorConnector(CAbstractorConfig(grid=3, depth=1), in_dim=16, out_dim=24),
], ids=["perceiver", "avgpool", "cabstractor"])
def test_output_token_count_does_not_depend_on_the_input_token_count(connector):
    for patches in (9, 36, 100):
        assert connector(torch.randn(2, patches, 16)).shape == (2, connector.num_tokens(9), 24)


def test_pixelshuffle_divides_the_token_count_by_r_squared_and_keeps_every_value():
    c = PixelShuffleConnector(PixelShuffleConfig(ratio=3), in_dim=4, out_dim=8)
    for patches in (36, 81, 144):
        assert c(torch.randn(2, patches, 4)).shape == (2, patches // 9, 8) == (2, c.num_tokens(patches), 8)
    x = torch.randn(2, 36, 4)
    shuffled = pixel_shuffle(x, 3)  # a permutation: the same values, nothing averaged away
    assert shuffled.shape == (2, 4, 36)
    torch.testing.assert_close(shuffled.flatten(1).sort().values, x.flatten(1).sort().values, rtol=0, atol=0)


@pytest.mark.parametrize(("patches", "ratio", "msg"), [
    (25, 2, r"ratio=2 does not divide the 5x5 patch grid; use a ratio in \[1, 5\]"),
    (24, 2, "square patch grid"),
])
def test_pixelshuffle_errors_name_the_grid_and_the_ratio(patches, ratio, msg):
    c = PixelShuffleConnector(PixelShuffleConfig(ratio=ratio), in_dim=4, out_dim=8)
    with pytest.raises(ValueError, match=msg):
        c.num_tokens(patches)
    with pytest.raises(ValueError, match=msg):
        c(torch.randn(1, patches, 4))


def test_perceiver_resamples_four_frames_jointly_into_the_documented_shapes():
    c = PerceiverResampler(PerceiverConfig(n_latents=6, depth=2, heads=2, head_dim=8, max_frames=4), 16, 24).eval()
    with torch.no_grad():
        c.time_emb.normal_()  # as after training: frames told apart
        video = torch.randn(3, 4, 9, 16)  # (B*N, T, P, Dv): 3 image slots of 4 frames of 9 patches
        out = c(video)
        assert out.shape == (3, 6, 24) and c.num_tokens(9) == 6  # (B*N, Q, Dt)
        assert c(video[:, 0]).shape == (3, 6, 24)  # one frame, (B*N, P, Dv)
        assert not torch.allclose(c(video.flip(1)), out, atol=1e-4)  # frame order matters through time embeddings
        # each slot is resampled on its own: changing slot 0 leaves slots 1 and 2 unchanged
        other = video.clone()
        other[0] = torch.randn(4, 9, 16)
        torch.testing.assert_close(c(other)[1:], out[1:])
    with pytest.raises(ValueError, match=r"max_frames=4; raise connector\.max_frames to >= 5"):
        c(torch.randn(1, 5, 9, 16))
    with pytest.raises(ValueError, match=r"\(B\*N, T, P, 16\)"):
        c(torch.randn(1, 9, 15))


def test_perceiver_starts_frame_neutral_and_the_idefics2_mask_hides_patches():
    c = PerceiverResampler(PerceiverConfig(n_latents=4, depth=1, max_frames=2), 8, 8).eval()
    x = torch.randn(2, 1, 9, 8)
    with torch.no_grad():  # zero time embeddings: two copies of a frame read like that frame's patches twice
        torch.testing.assert_close(c(torch.cat([x, x], 1)), c(torch.cat([x, x], 2)[:, 0]))
    c2 = PerceiverResampler(PerceiverConfig(variant="idefics2", n_latents=4, depth=1, heads=4, head_dim=4,
                                            kv_heads=1, max_frames=0), 8, 12).eval()
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 5:] = False
    with torch.no_grad():
        feats = torch.randn(2, 9, 8)
        ref = c2(feats, media_mask=mask)
        torch.testing.assert_close(c2(feats[:, :5]), ref)  # masked patches are as absent ones
    with pytest.raises(ValueError, match="media_mask has shape"):
        c2(feats, media_mask=mask[:, :4])


def test_parameter_counts_are_exact():
    # idefics: Dv 16 -> Dt 24, Q 4, 2 layers, 2 heads of 8, ff 4x, 3 frames
    layer = 3 * 2 * 16 + 3 * 16 * 16 + 16 * 16 + 2 * 16 * 64  # 3 LayerNorms, q k v, o, ReLU MLP = 3168
    total = 2 * layer + 4 * 16 + 3 * 16 + 2 * 16 + (16 * 24 + 24)  # latents, time, final norm, out_proj
    assert total == 6888
    assert count(PerceiverResampler(PerceiverConfig(n_latents=4, depth=2, heads=2, head_dim=8, max_frames=3),
                                    16, 24)) == total
    # idefics2: SwiGLU 16 -> 40 -> 24, then width 24: 4 heads of 6, 2 kv heads, 1 layer, RMSNorm (gain only)
    layer = 3 * 24 + 24 * 24 + 2 * 24 * 12 + 24 * 24 + 3 * 24 * 96  # norms, q, k v, o, SwiGLU = 8712
    total = (2 * 16 * 40 + 40 * 24) + layer + 4 * 24 + 24  # in_proj, layer, latents, final norm
    assert total == 11072
    cfg = PerceiverConfig(variant="idefics2", n_latents=4, depth=1, heads=4, head_dim=6, kv_heads=2, max_frames=0,
                          proj_hidden_dim=40)
    assert count(PerceiverResampler(cfg, 16, 24)) == total
    # pixelshuffle r=2: Dv*r^2 -> Dt, bias-free (Idefics3); depth 2 with biases
    assert count(PixelShuffleConnector(PixelShuffleConfig(ratio=2), 16, 24)) == 64 * 24 == 1536
    two = PixelShuffleConnector(PixelShuffleConfig(ratio=2, depth=2, bias=True), 16, 24)
    assert count(two) == (64 * 24 + 24) + (24 * 24 + 24) == 2160
    # cabstractor 8 -> hidden 12 -> 16, one block per stage, SE 0.25 (of the block's input width), MLP 2
    block1 = (8 * 12 + 24) + (12 * 9 + 24) + (12 * 2 + 2 + 2 * 12 + 12) + (12 * 12 + 24) + (8 * 12 + 24)
    block2 = (12 * 12 + 24) + (12 * 9 + 24) + (12 * 3 + 3 + 3 * 12 + 12) + (12 * 12 + 24)  # no shortcut conv
    readout = (12 * 16 + 16) + (16 * 16 + 16)
    assert (block1, block2, readout) == (602, 555, 480)
    assert count(CAbstractorConnector(CAbstractorConfig(grid=2, depth=1, hidden_dim=12), 8, 16)) == 1637


def _changed_tokens(c: CAbstractorConnector, x: torch.Tensor) -> torch.Tensor:
    """Per output token (on its 4 x 4 grid): how much it moves when patch (0, 0) of the 8 x 8 grid changes."""
    y = x.clone()
    y[:, 0] += 5.0
    with torch.no_grad():
        return (c(y) - c(x)).abs().amax(-1).view(4, 4)


def test_cabstractor_is_local_a_far_patch_moves_only_nearby_tokens():
    torch.manual_seed(0)
    c = CAbstractorConnector(CAbstractorConfig(grid=4, depth=1, se_ratio=0.0), in_dim=8, out_dim=8).eval()
    x = torch.randn(1, 64, 8)  # an 8 x 8 grid pooled to 4 x 4
    delta = _changed_tokens(c, x)
    # receptive field: a 3x3 conv reaches patch (1, 1) -> pooled cell (0, 0) -> a 3x3 conv reaches cells (<=1, <=1)
    assert delta[0, 0] > 1e-3
    far = torch.ones(4, 4, dtype=torch.bool)
    far[:2, :2] = False
    assert delta[far].max() < 1e-6, delta
    # gradients say the same: the far corner token does not depend on patch (0, 0) at all
    x.requires_grad_(True)
    c(x)[0, 15].sum().backward()
    assert x.grad[0, 0].abs().max() == 0 and x.grad[0, 63].abs().max() > 0
    # with squeeze-excitation the image-wide channel gate lets every token move, the near ones most
    se = CAbstractorConnector(CAbstractorConfig(grid=4, depth=1, se_ratio=0.25), in_dim=8, out_dim=8).eval()
    delta = _changed_tokens(se, x.detach())
    assert delta[0, 0] > delta[far].max() > 0


@pytest.mark.parametrize(("name", "tokens"), [("perceiver-4", 4), ("avgpool", 4), ("pixelshuffle", 1),
                                              ("cabstractor", 4)])
def test_compare_designs_build_on_the_quick_base_and_run(name, tokens):
    run = design_run(load_design(name), base_mapping(True), seed=0)
    model = build_model(run, []).eval()
    assert model.visual_tokens == tokens
    proc = model.processor()
    batch = proc.collate([proc.encode_prompt("<image>\nwhat color is the circle ?", [torch.rand(3, 36, 36)])],
                         "left")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()
