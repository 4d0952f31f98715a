"""BLIP-2 with an encoder-decoder LLM (Flan-T5: ``Blip2ForConditionalGeneration`` with a ``T5Config`` text model).

ViT -> Q-Former -> linear -> ``encoder_prefix`` -> T5: the ``num_query_tokens`` projected query outputs replace the
image tokens in front of the prompt, the T5 encoder reads them with the prompt, the decoder writes the answer.
``convert_blip2`` (``vlfuse.convert.blip2``) hands a folder here when its config has
``use_decoder_only_language_model`` false. Li et al., 2023 (arXiv:2301.12597). Parity:
``tests/parity/test_blip2_t5.py``.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PretrainedConfig

from vlfuse.convert.blip2 import load_blip2_qformer, qformer_config
from vlfuse.convert.common import Converted, rename, require, tokenizer
from vlfuse.data.tokenizer import TokenizerConfig
from vlfuse.encoders.blip2_vision import Blip2VisionEncoderConfig
from vlfuse.injection.encoder_prefix import EncoderPrefixConfig
from vlfuse.llm import SEQ2SEQ, LLMConfig
from vlfuse.loading import read_safetensors
from vlfuse.model import VLMConfig


def convert_blip2_t5(directory: Path, hf: PretrainedConfig) -> Converted:
    """``Blip2ForConditionalGeneration`` whose LLM is an encoder-decoder (``AutoModelForSeq2SeqLM``)."""
    kind = hf.text_config.model_type
    require(kind in SEQ2SEQ, f"BLIP-2 with a {kind!r} encoder-decoder LLM is not supported; vlfuse runs "
                             f"encoder-decoder LLMs of type {', '.join(sorted(SEQ2SEQ))}")
    require(hf.image_token_index is not None,
            "this BLIP-2 config has no image_token_index (an older checkpoint); set it to the id of the tokenizer's "
            "image token and save again")
    tok, image_token = tokenizer(directory, hf.image_token_index)
    config = VLMConfig(encoder=Blip2VisionEncoderConfig(config=hf.vision_config.to_dict()),
                       connector=qformer_config(hf), injection=EncoderPrefixConfig(),
                       llm=LLMConfig(config=hf.text_config.to_dict()),
                       tokenizer=TokenizerConfig(image_token=image_token))
    state = read_safetensors(directory)
    connector = load_blip2_qformer(state, hf, out_dim=hf.text_config.hidden_size)
    rest = {k: v for k, v in state.items() if k.startswith(("vision_model.", "language_model."))}
    rest = rename(rest, [("vision_model.", "encoder.tower."), ("language_model.", "llm.")])
    return Converted(config, tok, {**rest, **{f"connector.{k}": v for k, v in connector.state_dict().items()}})
