"""LLaVA-1.5 (``transformers.LlavaForConditionalGeneration``) -> vlfuse: HF vision tower, 2-layer MLP, concat, LM.

Liu et al., 2023 (arXiv:2310.03744). Keys of both transformers layouts (``model.vision_tower.`` since 4.52,
``vision_tower.`` before) map onto the slots. Parity: ``tests/parity/test_llava.py``.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PretrainedConfig

from vlfuse.connectors.mlp import MLPConfig
from vlfuse.convert.common import Converted, converter, rename, require, tokenizer
from vlfuse.data.tokenizer import TokenizerConfig
from vlfuse.encoders.hf_vision import HFVisionConfig
from vlfuse.injection.concat import ConcatConfig
from vlfuse.llm import LLMConfig
from vlfuse.loading import read_safetensors
from vlfuse.model import VLMConfig

_KEYS = [("model.vision_tower.", "encoder.tower."), ("vision_tower.", "encoder.tower."),
         ("model.multi_modal_projector.", "connector."), ("multi_modal_projector.", "connector."),
         ("model.language_model.", "llm.model."), ("language_model.model.", "llm.model."),
         ("lm_head.", "llm.lm_head."), ("language_model.lm_head.", "llm.lm_head.")]


@converter("llava")
def convert_llava(directory: Path, hf: PretrainedConfig) -> Converted:
    """``LlavaForConditionalGeneration`` -> ``hf`` encoder + ``mlp`` (depth 2) + ``concat`` + causal LM."""
    require(isinstance(hf.vision_feature_layer, int),
            f"vision_feature_layer={hf.vision_feature_layer} (several layers) is not supported yet")
    tok, image_token = tokenizer(directory, hf.image_token_id)
    config = VLMConfig(
        encoder=HFVisionConfig(config=hf.vision_config.to_dict(), feature_layer=hf.vision_feature_layer,
                               select=hf.vision_feature_select_strategy),
        connector=MLPConfig(depth=2, activation=hf.projector_hidden_act, bias=hf.multimodal_projector_bias),
        injection=ConcatConfig(),
        llm=LLMConfig(config=hf.text_config.to_dict()),
        tokenizer=TokenizerConfig(image_token=image_token),
    )
    return Converted(config, tok, rename(read_safetensors(directory), _KEYS))
