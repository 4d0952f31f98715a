"""LLaVA-1.5 (``transformers.LlavaForConditionalGeneration``) -> vlfuse: HF vision tower, 2-layer MLP, concat, LM.

Liu et al., 2023 (arXiv:2310.03744). Keys of both transformers layouts (``model.vision_tower.`` since 4.52,
``vision_tower.`` before) map onto the slots. A saved ``LlavaProcessor`` whose ``<image>`` expansion count differs
from the features the tower hands on is refused: transformers' own processor and model would fail on it too.
Parity: ``tests/parity/test_llava.py``, ``tests/parity/test_llava_user_path.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PretrainedConfig

from vlfuse.connectors.mlp import MLPConfig
from vlfuse.convert.common import Converted, converter, rename, require, tokenizer
from vlfuse.data.tokenizer import TokenizerConfig
from vlfuse.encoders.hf_vision import TOWERS, HFVisionConfig
from vlfuse.injection.concat import ConcatConfig
from vlfuse.llm import LLMConfig
from vlfuse.loading import read_safetensors
from vlfuse.model import VLMConfig

_KEYS = [("model.vision_tower.", "encoder.tower."), ("vision_tower.", "encoder.tower."),
         ("model.multi_modal_projector.", "connector."), ("multi_modal_projector.", "connector."),
         ("model.language_model.", "llm.model."), ("language_model.model.", "llm.model."),
         ("lm_head.", "llm.lm_head."), ("language_model.lm_head.", "llm.lm_head.")]


def _check_processor(directory: Path, hf: PretrainedConfig) -> None:
    """The saved ``LlavaProcessor`` expands ``<image>`` to as many tokens as the tower hands on."""
    path = directory / "processor_config.json"
    proc = json.loads(path.read_text()) if path.is_file() else {}
    patch = proc.get("patch_size")
    if proc.get("processor_class") != "LlavaProcessor" or not isinstance(patch, int):
        return  # no processor, or one of before transformers 4.47 (the model expanded the placeholder itself)
    v = hf.vision_config
    side = v.image_size // v.patch_size
    cls = int(TOWERS.get(v.model_type, {}).get("cls", False))  # an unknown tower is refused by the encoder
    features = side * side + cls - int(hf.vision_feature_select_strategy == "default")
    extra, strategy = proc.get("num_additional_image_tokens", 0), proc.get("vision_feature_select_strategy")
    expanded = (v.image_size // patch) ** 2 + extra - int(strategy == "default")
    require(expanded == features,
            f"{path}: patch_size={patch}, num_additional_image_tokens={extra}, vision_feature_select_strategy="
            f"{strategy!r} expand <image> to {expanded} tokens, but the {v.model_type} tower hands on {features} "
            f"features (patch_size {v.patch_size}, strategy {hf.vision_feature_select_strategy!r}); save the "
            "processor with the model's patch_size and strategy and num_additional_image_tokens = 1 for CLIP's "
            "CLS (0 for SigLIP)")


@converter("llava")
def convert_llava(directory: Path, hf: PretrainedConfig) -> Converted:
    """``LlavaForConditionalGeneration`` -> ``hf`` encoder + ``mlp`` (depth 2) + ``concat`` + causal LM."""
    require(isinstance(hf.vision_feature_layer, int),
            f"vision_feature_layer={hf.vision_feature_layer} (several layers) is not supported yet")
    _check_processor(directory, hf)
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
