"""The text tower takes any transformers text encoder (a BERT-like encoder from a folder, a causal LM's base model),
and the losses gathered over a process group equal the single-process loss of the whole batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from transformers import BertConfig, BertModel

from vlfuse.kinds.towers import TextTower, TextTowerConfig, text_hf_config
from vlfuse.objectives.contrastive import infonce_loss, sigmoid_loss

BERT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "vocab_size": 50, "max_position_embeddings": 16}


def test_a_bert_tower_from_a_folder_pools_cls(tmp_path):
    torch.manual_seed(0)
    hf = BertModel(BertConfig(**BERT)).eval()
    hf.save_pretrained(tmp_path)
    cfg = TextTowerConfig(path=str(tmp_path), pool="cls")
    tower = TextTower(cfg, text_hf_config(cfg, None, {}), embed_dim=8).eval()
    ids = torch.tensor([[2, 5, 7, 9, 0], [2, 6, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        got = tower(ids, mask)
    torch.testing.assert_close(got, tower.proj(ref), atol=1e-5, rtol=1e-5)


def test_a_causal_lm_tower_pools_the_last_real_token():
    cfg = TextTowerConfig(config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                                  "max_position_embeddings": 16}, pool="last_token")
    tower = TextTower(cfg, text_hf_config(cfg, 40, {"pad_token_id": 0}), embed_dim=8).eval()
    ids = torch.tensor([[3, 4, 5, 0, 0]])
    with torch.no_grad():
        padded = tower(ids, (ids != 0).long())
        alone = tower(ids[:, :3], torch.ones(1, 3, dtype=torch.long))
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)  # right padding after the text is ignored


def test_an_unknown_text_model_type_is_refused():
    with pytest.raises(ValueError, match="choices: clip_text_model"):
        TextTowerConfig(config={"model_type": "whisper"})


def _worker(rank, world, path, image, text, scale, bias, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    b = image.shape[0] // world
    rows = slice(rank * b, (rank + 1) * b)
    img, txt = image[rows].clone().requires_grad_(True), text[rows].clone()
    out[f"infonce{rank}"] = float(infonce_loss(img, txt, scale, group=dist.group.WORLD))
    out[f"sigmoid{rank}"] = float(sigmoid_loss(img, txt, scale, bias, group=dist.group.WORLD))
    dist.destroy_process_group()


def test_gathered_losses_average_to_the_whole_batch_loss(tmp_path):
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    scale, bias = torch.tensor(1.2), torch.tensor(-3.0)
    with mp.Manager() as manager:
        out = manager.dict()
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        mp.spawn(_worker, args=(2, str(tmp_path / "store"), image, text, scale, bias, out), nprocs=2)
        got = dict(out)
    for name, fn in (("infonce", lambda: infonce_loss(image, text, scale)),
                     ("sigmoid", lambda: sigmoid_loss(image, text, scale, bias))):
        mean = (got[f"{name}0"] + got[f"{name}1"]) / 2
        assert mean == pytest.approx(float(fn()), abs=1e-5), name
