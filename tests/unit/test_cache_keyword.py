"""The KV cache crosses the ``transformers`` boundary under the installed version's name, with no deprecation.

``transformers`` renamed ``past_key_values`` to ``cache`` (forward keyword and output field); the old name warns
through ``warnings`` (``deprecate_kwarg``: FutureWarning) and through its logger (``warning_once``). Generation must
emit neither, and must still work where ``past_key_values`` is the current name.
Shapes: ``B`` batch, ``G`` generated tokens.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import transformers
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
)
from transformers.utils import logging as hf_logging

import vlfuse.llm
from tests.conftest import tiny_vlm
from vlfuse.generate import generate_ids
from vlfuse.llm import CACHE_KEYWORD, LLM_TABLE, SEQ2SEQ

INJECTIONS = [{"kind": "concat"}, {"kind": "cross_attention", "every": 1}]
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def cache_name_messages() -> Iterator[list[str]]:
    """Collect every warning and ``transformers`` log message about the cache's old names, fresh each time.

    ``warning_once`` is an ``lru_cache``: cleared, so a message an earlier test already logged is logged again.
    The handler sits on the ``transformers`` logger itself, which does not propagate to the root (or to caplog).
    """
    hf_logging.warning_once.cache_clear()
    handler, logger = _Collect(), logging.getLogger("transformers")
    logger.addHandler(handler)
    found: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # pytest's config ignores FutureWarning; see them all here
            yield found
    finally:
        logger.removeHandler(handler)
        hf_logging.warning_once.cache_clear()
    texts = [str(w.message) for w in caught] + handler.messages
    found.extend(t for t in texts if "past_key_values" in t or "cache_params" in t)


def generate_three(injection: dict, llm: dict | None = None) -> torch.Tensor:
    overrides = {"injection": injection} | ({"llm": {"config": llm}} if llm else {})
    vlm = tiny_vlm(**overrides).eval()
    proc = vlm.processor()
    images = [torch.rand(3, 8, 8), torch.rand(3, 8, 8)]
    examples = [proc.encode_prompt("<image> <image> what color ?", images),
                proc.encode_prompt("<image> is the circle red ?", images[:1])]
    batch = proc.collate(examples, padding_side="left")
    return generate_ids(vlm, batch, max_new_tokens=3, eos_token_id=-1)  # (B, G): prefill + 2 cached steps


def test_every_llm_family_takes_the_chosen_cache_keyword():
    for model_type in LLM_TABLE:
        seq2seq = model_type in SEQ2SEQ  # built as AutoModelForSeq2SeqLM
        names = MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES if seq2seq else MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        cls = getattr(transformers, names[model_type])
        assert CACHE_KEYWORD in inspect.signature(cls.forward).parameters, (model_type, cls.__name__)


@pytest.mark.parametrize("injection", INJECTIONS, ids=["concat", "cross_attention"])
def test_generation_emits_no_cache_name_deprecation(injection):
    with cache_name_messages() as found:
        ids = generate_three(injection)
    assert ids.shape == (2, 3)
    assert found == []


def test_generation_through_gpt2_emits_no_cache_name_deprecation():
    with cache_name_messages() as found:
        ids = generate_three({"kind": "cross_attention", "every": 2}, GPT2)
    assert ids.shape == (2, 3)
    assert found == []


@pytest.mark.skipif(CACHE_KEYWORD == "past_key_values", reason="past_key_values is this transformers' current name")
@pytest.mark.parametrize("injection", INJECTIONS, ids=["concat", "cross_attention"])
def test_the_old_name_still_works_and_is_caught(monkeypatch, injection):
    """The capture above really sees the deprecation; and the old keyword gives the same tokens (older releases)."""
    torch.manual_seed(0)
    new = generate_three(injection)
    monkeypatch.setattr(vlfuse.llm, "CACHE_KEYWORD", "past_key_values")
    torch.manual_seed(0)
    with cache_name_messages() as found:
        old = generate_three(injection)
    assert found, "the old keyword should have warned; the capture is blind"
    assert torch.equal(old, new)
