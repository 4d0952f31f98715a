"""Analytic cost of each fusion design: parameters added, prefill and decode FLOPs, KV-cache bytes.

Conventions (Kaplan et al., 2020, arXiv:2001.08361, sec. 2.1; Hoffmann et al., 2022, arXiv:2203.15556, app. F;
nanochat ``estimate_flops``): a weight matrix ``m x n`` costs ``2 m n`` FLOPs per token (multiply + add); norms,
softmax, activations, biases, rotary embeddings, gates and the embedding lookup are left out (< 1 %). One query
attending to ``c`` keys costs ``4 c h hd`` (``QK^T`` and ``AV``). Notation: ``L d h g hd f n_v`` LLM layers, width,
heads, KV heads, head dim, FFN width, vocab; ``N`` images, ``V`` visual tokens per image (``P`` patches of the
encoder), ``Q`` queries / latents, ``T`` text tokens, ``G`` new tokens; ``a = h hd``, ``kv = g hd``.

LLM, per layer ``W = 2 d a + 2 d kv + 3 d f`` weights (q, o; k, v; SwiGLU gate/up/down):
  prefill(S) = 2 L W S + 2 L a S (S + 1) + 2 d n_v       (causal: token i attends i keys; logits of the last only)
  decode(c)  = 2 L W + 4 L a (c + 1) + 2 d n_v           (one new token over c cached keys and itself)
  KV bytes   = 2 L kv (tokens cached) bytes_per_element

Designs:
  concat (LLaVA, Liu et al., 2023): MLP projector ``Dv -> d -> d`` on all ``N P`` patches, ``S = T + N V``, so
    attention is O((T + N V)^2) and every visual token sits in the KV cache.
  xattn (Flamingo, Alayrac et al., 2022; Llama 3.2 Vision): the LLM keeps ``S = T``; ``L / k`` gated
    cross-attention blocks (q, k, v, o + SwiGLU FFN) read the ``N V`` projected visual tokens: attention
    O(T^2 + T N V). Visual K/V are computed once and cached: ``2 (L/k) kv N V`` elements. Every text token is
    counted attending every visual token (Flamingo's per-image mask lowers this); with no image the blocks are
    skipped, as Llama 3.2 Vision does.
  qformer (BLIP-2, Li et al., 2023): ``Q = 32`` queries through a BERT-base Q-Former (self-attention + FFN every
    layer, cross-attention to the ``P`` patches every 2nd layer), a linear map to ``d``, then concat with
    ``S = T + N Q``.
  perceiver (Flamingo / Idefics2 resampler, Jaegle et al., 2021): ``Q = 64`` latents at the vision width attend to
    ``[patches; latents]`` in each layer (GELU FFN 4x), a linear map to ``d``, then concat with ``S = T + N Q``.
  late (CLIP, Radford et al., 2021): two towers and a similarity; the LLM never sees the image, so its prefill,
    decode and KV cache are text-only; only the two projection heads are added.
The vision encoder (``vision_flops``) is the same for every design and reported apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlfuse.budget.dims import FusionDims, LLMDims, VisionDims

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class Workload:
    """One request: ``images`` of the encoder's size, ``text_tokens`` of prompt, ``new_tokens`` generated."""

    images: int  # N
    text_tokens: int  # T
    new_tokens: int  # G
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        if min(self.images, self.text_tokens, self.new_tokens) < 0:
            raise ValueError(f"images={self.images}, text_tokens={self.text_tokens}, new_tokens={self.new_tokens} "
                             "must all be >= 0")
        if self.dtype not in BYTES:
            raise ValueError(f"--dtype {self.dtype!r}: choices are {', '.join(BYTES)}")


@dataclass(frozen=True)
class Cost:
    """What one design costs for one workload (FLOPs and bytes; the vision encoder apart)."""

    design: str
    params_added: int  # weights the design adds to the LLM (projectors, resamplers, cross-attention blocks)
    llm_tokens: int  # S: positions in the LLM's self-attention after the prompt
    prefill_flops: int  # LLM + fusion modules over the prompt
    decode_flops_first: int  # first generated token
    decode_flops_last: int  # G-th generated token (the cache has grown by G - 1)
    decode_flops_total: int  # all G tokens
    kv_cache_bytes: int  # after G new tokens, visual K/V of cross-attention included
    vision_flops: int  # the vision encoder over N images (same for every design)


def layer_weights(m: LLMDims) -> int:
    """``W``: weights of one decoder layer's matmuls (q, k, v, o and the SwiGLU FFN)."""
    a, kv = m.heads * m.hd, m.g * m.hd
    return 2 * m.hidden * a + 2 * m.hidden * kv + 3 * m.hidden * m.ffn


def llm_prefill(m: LLMDims, s: int) -> int:
    a = m.heads * m.hd
    return 2 * m.layers * layer_weights(m) * s + 2 * m.layers * a * s * (s + 1) + 2 * m.hidden * m.vocab


def llm_decode(m: LLMDims, cache: int) -> int:
    a = m.heads * m.hd
    return 2 * m.layers * layer_weights(m) + 4 * m.layers * a * (cache + 1) + 2 * m.hidden * m.vocab


def kv_bytes(m: LLMDims, tokens: int, dtype: str) -> int:
    return 2 * m.layers * m.g * m.hd * tokens * BYTES[dtype]


def vision_flops(v: VisionDims, images: int) -> int:
    """Patch embedding + ``layers`` ViT blocks (full attention over ``P + cls`` tokens), per image x ``N``."""
    n = v.patches + v.cls
    block = 2 * (4 * v.hidden**2 + 2 * v.hidden * v.ffn) * n + 4 * v.hidden * n * n
    return images * (2 * 3 * v.patch**2 * v.hidden * v.patches + v.layers * block)


Design = Callable[[LLMDims, VisionDims, FusionDims, Workload], Cost]
DESIGNS: dict[str, Design] = {}


def design(name: str) -> Callable[[Design], Design]:
    """Register a cost function under ``name`` (``vlfuse cost --design name``)."""

    def deco(fn: Design) -> Design:
        if name in DESIGNS:
            raise ValueError(f"cost design {name!r} is registered twice")
        DESIGNS[name] = fn
        return fn

    return deco


def _concat_llm(name: str, m: LLMDims, v: VisionDims, w: Workload, per_image: int, params: int,
                module_flops: int) -> Cost:
    """Shared tail of every design that puts ``per_image`` tokens per image into the LLM sequence."""
    s = w.text_tokens + w.images * per_image
    steps = [llm_decode(m, s + j) for j in range(w.new_tokens)]
    return Cost(name, params, s, llm_prefill(m, s) + module_flops, steps[0] if steps else 0,
                steps[-1] if steps else 0, sum(steps), kv_bytes(m, s + w.new_tokens, w.dtype),
                vision_flops(v, w.images))


@design("concat")
def concat(m: LLMDims, v: VisionDims, f: FusionDims, w: Workload) -> Cost:
    params = v.hidden * m.hidden + m.hidden * m.hidden  # 2-layer MLP projector, LLaVA-1.5
    return _concat_llm("concat", m, v, w, v.patches, params, 2 * params * w.images * v.patches)


@design("qformer")
def qformer(m: LLMDims, v: VisionDims, f: FusionDims, w: Workload) -> Cost:
    q, h, p = f.qformer_queries, f.qformer_hidden, v.patches
    cross = f.qformer_layers // 2  # cross-attention every 2nd layer
    per_layer = 4 * h * h + 2 * h * f.qformer_ffn  # self-attention q, k, v, o + GELU FFN
    per_cross = 2 * h * h + 2 * v.hidden * h  # q, o at h; k, v from the vision width
    params = q * h + f.qformer_layers * per_layer + cross * per_cross + h * m.hidden
    per_image = (f.qformer_layers * (2 * per_layer * q + 4 * h * q * q)
                 + cross * (2 * 2 * h * h * q + 2 * 2 * v.hidden * h * p + 4 * h * q * p) + 2 * h * m.hidden * q)
    return _concat_llm("qformer", m, v, w, q, params, w.images * per_image)


@design("perceiver")
def perceiver(m: LLMDims, v: VisionDims, f: FusionDims, w: Workload) -> Cost:
    q, h, p = f.perceiver_latents, v.hidden, v.patches
    per_layer = 4 * h * h + 8 * h * h  # q, k, v, o + GELU FFN (4x)
    params = q * h + f.perceiver_layers * per_layer + h * m.hidden
    per_image = (f.perceiver_layers * (2 * 2 * h * h * (p + q) + 2 * 2 * h * h * q + 4 * h * q * (p + q)
                                       + 2 * 8 * h * h * q) + 2 * h * m.hidden * q)
    return _concat_llm("perceiver", m, v, w, q, params, w.images * per_image)


@design("xattn")
def xattn(m: LLMDims, v: VisionDims, f: FusionDims, w: Workload) -> Cost:
    a, kv, d = m.heads * m.hd, m.g * m.hd, m.hidden
    blocks = m.layers // f.xattn_every if w.images else 0  # without images the blocks are skipped
    q_side = 2 * d * a + 3 * d * m.ffn  # q, o + SwiGLU FFN: applied to text tokens
    kv_side = 2 * d * kv  # k, v: applied to visual tokens once
    params = v.hidden * d + blocks * (q_side + kv_side)
    nv, t = w.images * v.patches, w.text_tokens
    prefill = (llm_prefill(m, t) + 2 * v.hidden * d * nv
               + blocks * (2 * kv_side * nv + 2 * q_side * t + 4 * a * t * nv))
    steps = [llm_decode(m, t + j) + blocks * (2 * q_side + 4 * a * nv) for j in range(w.new_tokens)]
    kv_total = kv_bytes(m, t + w.new_tokens, w.dtype) + 2 * blocks * kv * nv * BYTES[w.dtype]
    return Cost("xattn", params, t, prefill, steps[0] if steps else 0, steps[-1] if steps else 0, sum(steps),
                kv_total, vision_flops(v, w.images))


@design("late")
def late(m: LLMDims, v: VisionDims, f: FusionDims, w: Workload) -> Cost:
    e = f.late_embed
    params = v.hidden * e + m.hidden * e  # the two projection heads
    heads = 2 * v.hidden * e * w.images + 2 * m.hidden * e + 2 * e * w.images  # + cosine similarities
    return _concat_llm("late", m, v, w, 0, params, heads)


def estimate_cost(designs: list[str], m: LLMDims, v: VisionDims, f: FusionDims, w: Workload) -> list[Cost]:
    """The cost of each named design for one workload."""
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        raise ValueError(f"unknown design {', '.join(unknown)}; choices are: {', '.join(DESIGNS)}")
    return [DESIGNS[d](m, v, f, w) for d in designs]
