"""The ``avgpool`` and ``none`` connectors, and the compare measurements that do not need training."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_LLAMA, tiny_vlm
from vlfuse.compare.measure import cache_bytes, latency, parameter_counts
from vlfuse.connectors.pooling import AvgPoolConfig, AvgPoolConnector


def test_avgpool_is_the_mean_of_each_cell_then_the_mlp():
    c = AvgPoolConnector(AvgPoolConfig(grid=2, depth=1), in_dim=3, out_dim=5)
    feats = torch.randn(2, 16, 3)  # a 4 x 4 grid
    grid = feats.view(2, 4, 4, 3)
    cells = torch.stack([grid[:, r:r + 2, q:q + 2].mean((1, 2)) for r in (0, 2) for q in (0, 2)], 1)  # (2, 4, 3)
    torch.testing.assert_close(c(feats), c.proj(cells))
    assert c.num_tokens(16) == 4 and c.num_tokens(64) == 4  # V does not depend on the input's patch count


def test_avgpool_one_token_is_the_image_mean():
    c = AvgPoolConnector(AvgPoolConfig(grid=1), in_dim=3, out_dim=5)
    feats = torch.randn(2, 9, 3)
    torch.testing.assert_close(c(feats), c.proj(feats.mean(1, keepdim=True)))


@pytest.mark.parametrize(("patches", "grid", "msg"), [(10, 1, "square patch grid"), (16, 5, "grid <= 4")])
def test_avgpool_errors_name_the_problem(patches, grid, msg):
    with pytest.raises(ValueError, match=msg):
        AvgPoolConnector(AvgPoolConfig(grid=grid), in_dim=3, out_dim=5).num_tokens(patches)


def test_blind_model_never_runs_the_encoder_and_ignores_pixels():
    model = tiny_vlm(connector={"kind": "none"}).eval()
    assert model.visual_tokens == 0 and parameter_counts(model)["added"] == 0
    proc = model.processor()
    calls = []
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    outs = []
    for seed in (0, 1):
        image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(seed))
        batch = proc.collate([proc.encode_prompt("<image>\nwhat color is the circle ?", [image])], "left")
        assert (batch["input_ids"] == model.injector.image_token_id).sum() == 0
        outs.append(model(**batch).logits)
    assert not calls
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_kv_bytes_are_exact_and_grow_with_images():
    model = tiny_vlm().eval()  # 16 visual tokens per image, 2 layers, 2 KV heads of 16, fp32
    one, eight = latency(model, 1, new_tokens=2, repeats=1), latency(model, 8, new_tokens=2, repeats=1)
    per_token = 2 * TINY_LLAMA["num_hidden_layers"] * TINY_LLAMA["hidden_size"] * 4  # K and V, every layer
    assert one["kv_bytes"] == one["prompt_tokens"] * per_token
    assert eight["kv_bytes"] - one["kv_bytes"] == 7 * model.visual_tokens * per_token  # "\n" is whitespace here
    assert cache_bytes(None) == 0 and one["decode_ms_per_token"] > 0
