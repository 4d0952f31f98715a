"""The cost model's Q-Former (``vlfuse cost --design qformer``) and the real module agree on their weights."""

from __future__ import annotations

import torch

from vlfuse.budget.cost import Workload, qformer
from vlfuse.budget.dims import LLM_PRESETS, VISION_PRESETS, FusionDims
from vlfuse.connectors.qformer import QFormer, QFormerConfig


def test_cost_model_params_are_the_qformers_weight_matrices():
    llm, vision, fusion = LLM_PRESETS["vicuna-7b"], VISION_PRESETS["eva-vit-g-224"], FusionDims()
    cost = qformer(llm, vision, fusion, Workload(images=1, text_tokens=16, new_tokens=1))
    config = QFormerConfig(hidden_size=fusion.qformer_hidden, layers=fusion.qformer_layers,
                           intermediate_size=fusion.qformer_ffn, num_queries=fusion.qformer_queries)
    with torch.device("meta"):
        module = QFormer(config, in_dim=vision.hidden, out_dim=llm.hidden)
    matrices = sum(p.numel() for p in module.parameters() if p.dim() == 2)  # biases and LayerNorms aside
    assert cost.params_added == matrices
    assert cost.llm_tokens == 16 + module.num_tokens(vision.image // vision.patch)
