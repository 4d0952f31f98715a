"""The VLM: ``vision encoder -> connector -> injection -> LLM``, assembled from one ``VLMConfig``.

Composition only: no model-family branches live here; each slot is a registered design.
Shapes: ``B`` batch, ``N_all`` images in the batch, ``C H W`` pixels, ``P`` patches, ``Dv`` vision width,
``V`` visual tokens per image, ``S`` sequence length, ``Dt`` LLM width, ``W`` vocabulary size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from vlfuse.config import component
from vlfuse.connectors.base import Connector
from vlfuse.data.collate import Processor
from vlfuse.data.instruction import INSTRUCTION_INPUTS, InstructionText
from vlfuse.data.tokenizer import TokenizerConfig, load_tokenizer
from vlfuse.data.transforms import ImageConfig
from vlfuse.encoders.base import VisionEncoder
from vlfuse.injection.base import Injector
from vlfuse.llm import LLMConfig, build_llm, hidden_size, is_seq2seq, max_positions
from vlfuse.registry import CONNECTORS, ENCODERS, INJECTIONS, MODELS


def _pick(inputs: dict[str, torch.Tensor], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The entries of ``inputs`` a slot declares (``names``)."""
    return {k: inputs[k] for k in names if k in inputs}


@dataclass(frozen=True)
class VLMConfig:
    """One VLM: each slot's ``kind`` picks a registered design; the other keys configure it."""

    encoder: Any = component("ENCODERS", "vit")
    connector: Any = component("CONNECTORS", "mlp")
    injection: Any = component("INJECTIONS", "concat")
    llm: LLMConfig = field(default_factory=LLMConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    image: ImageConfig = field(default_factory=ImageConfig)  # aspect-ratio handling of the processor
    kind: Literal["vlm"] = "vlm"  # the model kind (vlfuse.kinds); a run's model section without kind is this


@dataclass
class VLMOutput:
    """``loss`` (scalar, when labels were given), ``logits (B, S, W)`` (``(N_labels, W)`` with
    ``label_logits_only``), the LLM's ``past_key_values``."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    past_key_values: Any = None


@MODELS.register("vlm", VLMConfig)
class VLM(nn.Module):
    """A vision-language model built from its four slots.

    Args:
        config: the ``VLMConfig`` it was built from (saved with it).
        encoder, connector, injector, llm: built modules.
        tokenizer: holds the image placeholder token.
        qformer_tokenizer: the tokenizer of an instruction Q-Former's text (InstructBLIP's BERT); None: ``tokenizer``.

    Example:
        >>> model = VLM.from_config(VLMConfig())
        >>> model.generate(images=[Image.open("scene.png")], prompt="<image> what color is the circle ?")
        'red'
    """

    components = ("encoder", "connector", "injector", "llm")  # what a stage's policy trains, freezes or LoRAs

    def __init__(self, config: VLMConfig, encoder: VisionEncoder, connector: Connector, injector: Injector,
                 llm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 qformer_tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder, self.connector, self.injector, self.llm = encoder, connector, injector, llm
        self.tokenizer, self.qformer_tokenizer = tokenizer, qformer_tokenizer
        self.injector.image_token_id = tokenizer.convert_tokens_to_ids(config.tokenizer.image_token)

    @classmethod
    def from_config(cls, config: VLMConfig, tokenizer: PreTrainedTokenizerBase | None = None,
                    texts: list[str] | None = None, qformer_tokenizer: PreTrainedTokenizerBase | None = None) -> VLM:
        """Build every slot from ``config``; the built-in BPE tokenizer trains on ``texts`` (default: the words
        of the default scenes), unless ``tokenizer`` is given or ``config.tokenizer.path`` names a folder."""
        if tokenizer is None:
            if texts is None and config.tokenizer.path is None:
                from vlfuse.data.dataset import scene_texts
                from vlfuse.data.scenes import ScenesConfig

                texts = scene_texts(ScenesConfig())
            tokenizer = load_tokenizer(config.tokenizer, texts or [])
        encoder = ENCODERS.build(config.encoder)
        llm = build_llm(config.llm, vocab_size=len(tokenizer))
        injector = INJECTIONS.build(config.injection, llm)
        if is_seq2seq(llm) != injector.encoder_decoder:
            raise ValueError(f"injection {config.injection.kind!r} does not run a {llm.config.model_type!r} LLM: an "
                             "encoder-decoder LLM needs injection kind 'encoder_prefix', a causal LM any other kind")
        # an injection may read visual tokens of another width than the LLM's (IDEFICS: the vision width)
        out_dim = getattr(injector, "media_dim", None) or hidden_size(llm)
        connector = CONNECTORS.build(config.connector, in_dim=encoder.embed_dim, out_dim=out_dim)
        return cls(config, encoder, connector, injector, llm, tokenizer, qformer_tokenizer)

    # --- sizes -------------------------------------------------------------------------------------------------
    @property
    def visual_tokens(self) -> int:
        """``V``: visual tokens per image at the encoder's input size."""
        size = self.encoder.image_size
        return self.connector.num_tokens(self.encoder.num_patches(size, size))

    @property
    def max_length(self) -> int:
        """The LLM's position limit."""
        return max_positions(self.llm)

    def processor(self) -> Processor:
        """The ``Processor`` (template, image expansion, transforms) that matches this model."""
        transform = self.encoder.image_transform(self.config.image)  # as saved with it; or the encoder's tiles
        instruction = None  # an instruction Q-Former (InstructBLIP) reads the prompts too, in its own tokenizer's ids
        if INSTRUCTION_INPUTS[0] in self.connector.inputs:
            instruction = InstructionText(self.qformer_tokenizer or self.tokenizer,
                                          self.connector.config.max_text_positions)
        return Processor(self.tokenizer, transform, self.injector.placeholder_tokens(self.visual_tokens),
                         self.max_length, self.config.tokenizer.image_token, self.visual_tokens,
                         self.config.tokenizer.image_prefix, instruction,
                         encoder_decoder=self.injector.encoder_decoder,
                         bos_after_images=self.config.tokenizer.bos_after_images)

    # --- forward -----------------------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """``(N_all, C, H, W) -> (N_all, V, Dt)``; a connector of zero tokens (``none``) skips the encoder.

        ``inputs`` are the batch's other keys; the encoder and the connector each get those they declare.
        """
        if self.visual_tokens == 0:
            return pixel_values.new_zeros(pixel_values.shape[0], 0, hidden_size(self.llm))  # (N_all, 0, Dt)
        weight = next(self.encoder.parameters(), None)
        if weight is not None and pixel_values.is_floating_point():
            pixel_values = pixel_values.to(weight.dtype)  # the processor gives fp32; a bf16 / fp16 model reads its own
        features = self.encoder(pixel_values, **_pick(inputs, self.encoder.inputs))
        return self.connector(features, **_pick(inputs, self.connector.inputs))

    @property
    def input_names(self) -> tuple[str, ...]:
        """The batch keys this model reads beyond ``VLM.forward``'s own (each slot declares its ``inputs``)."""
        return tuple(dict.fromkeys((*self.encoder.inputs, *self.connector.inputs, *self.injector.inputs)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                image_counts: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                past_key_values: Any = None, use_cache: bool = False, visual: torch.Tensor | None = None,
                label_logits_only: bool = False, **inputs: torch.Tensor) -> VLMOutput:
        """``input_ids (B, S)`` with expanded image tokens, ``pixel_values (N_all, C, H, W)`` -> ``VLMOutput``.

        ``visual (N_all, V, Dt)`` may be given instead of ``pixel_values`` (already encoded images).
        ``label_logits_only`` (with ``labels``) runs the LM head only at the positions that predict a label, about
        one in seven in a scenes batch, and returns those logits flat, ``(N_labels, W)``; the loss is the same.
        Training uses it: the head and its log-softmax were a fifth of a step.
        ``inputs``: the processor's other keys (``model.input_names``), each handed to the slot that declares it.
        """
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise TypeError(f"VLM.forward got {', '.join(map(repr, unknown))}, which no slot of this model reads "
                            f"(its slots read: {', '.join(self.input_names) or 'no extra inputs'}); pass only the "
                            "keys its processor returns")
        if input_ids.shape[1] > self.max_length and past_key_values is None:
            n_img = int((input_ids == self.injector.image_token_id).sum())
            raise ValueError(
                f"sequence of {input_ids.shape[1]} tokens ({input_ids.shape[1] - n_img} text + {n_img} visual) "
                f"exceeds the LLM's {self.max_length} positions; use fewer images or a shorter text"
            )
        if visual is None and pixel_values is not None:
            visual = self.encode_images(pixel_values, **inputs)  # (N_all, V, Dt)
        if position_ids is None and attention_mask is not None and past_key_values is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, S), left padding safe
        keep = self.injector.label_positions(labels) if label_logits_only and labels is not None else 0  # (B, S)
        if labels is not None:
            inputs["labels"] = labels  # handed on only to an injector that declares it (encoder-decoder targets)
        out = self.injector(self.llm, input_ids, visual, attention_mask=attention_mask, position_ids=position_ids,
                            past_key_values=past_key_values, use_cache=use_cache, image_counts=image_counts,
                            logits_to_keep=keep, **_pick(inputs, self.injector.inputs))
        loss = None if labels is None else self.injector.loss(out.logits, labels, keep)
        return VLMOutput(loss, out.logits, out.past_key_values)

    # --- generation, persistence (thin wrappers: the work lives in generate.py and checkpoint.py) ---------------
    @torch.no_grad()
    def generate(self, prompt: str, images: list[Any] | None = None, **kwargs: Any) -> str:
        """Answer ``prompt`` (one ``<image>`` per image) about ``images``; kwargs go to ``generate.generate``."""
        from vlfuse.generate import generate_text

        return generate_text(self, prompt, images or [], **kwargs)

    # --- the model-kind protocol (kinds/base.py): training, evaluation and compare call only these ------------
    def objective(self, name: str) -> Any:
        """The training objective ``name`` (``lm``, ``blip2``; ``vlfuse.objectives.stage``)."""
        from vlfuse.objectives.stage import objective

        return objective(name)

    def answer(self, records: list[dict[str, Any]], candidates: dict[str, list[str]]) -> list[str]:
        """Greedy answers to question records, generated (``candidates`` unused: a decoder answers freely)."""
        from vlfuse.evaluate import generated_answers

        return generated_answers(self, records)

    def retrieval_scores(self, records: list[dict[str, Any]], batch_size: int,
                         rerank: int = 0) -> dict[str, torch.Tensor]:
        """Image-caption scores from a pre-trained Q-Former (ITC, optionally ITM-re-ranked)."""
        from vlfuse.evaluate_retrieval import qformer_scores

        return qformer_scores(self, records, batch_size, rerank)

    def costs(self, image_counts: Any, repeats: int) -> dict[str, Any]:
        """Visual tokens, parameters, prefill / decode latency and KV cache (``vlfuse.compare.measure``)."""
        from vlfuse.compare.measure import vlm_costs

        return vlm_costs(self, image_counts, repeats)

    def save_pretrained(self, directory: str) -> None:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer files (atomically)."""
        from vlfuse.train.checkpoint import save_vlm

        save_vlm(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str, dtype: torch.dtype | str | None = None,
                        device: str | torch.device = "cpu") -> VLM:
        """Load a model written by ``save_pretrained``; never unpickles, never runs code from the folder.

        ``dtype`` None keeps the saved dtypes (the LLM's ``llm.dtype``, float32 elsewhere); a dtype (or its name)
        casts every floating weight. The model is built with its parameters on ``meta`` and the weights are
        assigned on ``device``, so loading holds one copy of them.
        """
        from vlfuse.train.checkpoint import load_vlm

        return load_vlm(directory, dtype=dtype, device=device)

    @classmethod
    def from_transformers(cls, directory: str, dtype: torch.dtype | str = "auto",
                          device: str | torch.device = "cpu") -> VLM:
        """Load a saved ``transformers`` VLM (e.g. ``LlavaForConditionalGeneration``) into the equivalent VLM.

        ``dtype="auto"`` follows the dtype saved in its config.json (as transformers does); its saved image
        processor gives the normalisation and ``config.image`` (resize, filter, scale). Refuses folders that ask
        to run their own code and pickled weights.

        Example:
            >>> model = VLM.from_transformers("checkpoints/llava-1.5-7b-hf", dtype=torch.bfloat16, device="cuda")
        """
        from vlfuse.convert import from_transformers

        return from_transformers(directory, dtype=dtype, device=device)

    def replace_config(self, **changes: Any) -> None:
        """Record a change of a slot's config (e.g. after converting weights) in ``self.config``."""
        self.config = dataclasses.replace(self.config, **changes)
