"""Costs of one trained design, measured: parameters, prefill latency, decode time per token, KV cache, memory.

Latency is the median of ``repeats`` timed runs after a warm-up, on one prompt of ``n`` images and a question;
decode feeds the argmax token for ``new_tokens`` steps with the KV cache on (never stopping at EOS, so every
design decodes the same number of steps). Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU and the
peak resident set size of this process on a CPU.
Shapes: ``N`` images, ``S`` prompt length, ``Dt`` LLM width.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from vlfuse.model import VLM


def parameter_counts(model: VLM) -> dict[str, int]:
    """``added``: what the design puts between the backbones (connector + injection); ``trained``: what the
    last stage's policy trains; ``total``: everything, vision encoder and LLM included."""
    def count(module: torch.nn.Module, trainable: bool = False) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

    return {"added": count(model.connector) + count(model.injector), "trained": count(model, trainable=True),
            "total": count(model)}


def cache_bytes(past: Any) -> int:
    """Bytes held by a ``transformers`` KV cache (``DynamicCache`` or legacy tuples), visual K/V included."""
    total, seen = 0, set()

    def walk(obj: Any) -> None:
        nonlocal total
        if isinstance(obj, torch.Tensor):
            if obj.data_ptr() not in seen:
                seen.add(obj.data_ptr())
                total += obj.numel() * obj.element_size()
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        elif hasattr(obj, "self_attn") and hasattr(obj, "visual_bytes"):  # vlfuse CrossAttentionCache
            walk([obj.self_attn, obj.keys, obj.values])
        elif hasattr(obj, "layers"):  # transformers >= 4.56 Cache: .layers[i].keys / .values
            for layer in obj.layers:
                walk([getattr(layer, "keys", None), getattr(layer, "values", None)])
        elif hasattr(obj, "key_cache"):  # older DynamicCache
            walk([obj.key_cache, obj.value_cache])

    walk(past)
    return total


def cache_split(past: Any) -> dict[str, int]:
    """``{"self_attn": bytes of the LLM's own KV, "visual": bytes of cached cross-attention K/V}`` (0 for concat)."""
    if hasattr(past, "self_attn") and hasattr(past, "visual_bytes"):
        return {"self_attn": cache_bytes(past.self_attn), "visual": cache_bytes([past.keys, past.values])}
    return {"self_attn": cache_bytes(past), "visual": 0}


def _prompt(model: VLM, n_images: int, question: str = "what color is the circle ?") -> dict[str, torch.Tensor]:
    proc = model.processor()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(n_images)
    images = [torch.rand(model.encoder.in_channels, model.encoder.image_size, model.encoder.image_size, generator=g)
              for _ in range(n_images)]
    example = proc.encode_prompt("<image>\n" * n_images + question, images)
    return {k: v.to(device) for k, v in proc.collate([example], "left").items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Median seconds over ``repeats`` runs after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


@torch.no_grad()
def latency(model: VLM, n_images: int, new_tokens: int = 16, repeats: int = 3) -> dict[str, float]:
    """``prefill_ms``, ``decode_ms_per_token`` and ``kv_bytes`` (cache at the end of the prompt) for ``n`` images."""
    model.eval()
    batch = _prompt(model, n_images)
    device = batch["input_ids"].device

    def prefill() -> Any:
        return model(batch["input_ids"], attention_mask=batch["attention_mask"],
                     pixel_values=batch.get("pixel_values"), image_counts=batch.get("image_counts"), use_cache=True)

    prefill_s, out = _timed(prefill, device, repeats)
    kv, split = cache_bytes(out.past_key_values), cache_split(out.past_key_values)
    length = batch["attention_mask"].shape[1]

    def pick(logits: torch.Tensor) -> torch.Tensor:  # (1, W) -> (1, 1); never the image placeholder
        return logits.index_fill(-1, image_id, float("-inf")).argmax(-1, keepdim=True)

    image_id = torch.tensor([max(model.injector.image_token_id, 0)], device=device)

    def decode() -> float:
        first = prefill()
        past, token = first.past_key_values, pick(first.logits[:, -1])
        mask = batch["attention_mask"]
        _sync(device)
        t0 = time.perf_counter()
        for i in range(new_tokens):
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)  # (1, S + i + 1)
            step = model(token, attention_mask=mask, position_ids=torch.full_like(token, length + i),
                         past_key_values=past, use_cache=True)
            past, token = step.past_key_values, pick(step.logits[:, -1])
        _sync(device)
        return time.perf_counter() - t0

    decode()  # warm-up
    decode_s = statistics.median(decode() for _ in range(repeats))
    return {"prefill_ms": 1000 * prefill_s, "decode_ms_per_token": 1000 * decode_s / new_tokens,
            "kv_bytes": kv, "kv_self_attn_bytes": split["self_attn"], "kv_visual_bytes": split["visual"],
            "prompt_tokens": length}


def peak_memory_bytes(device: torch.device) -> int:
    """GPU: ``max_memory_allocated``; CPU: this process's peak RSS (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def vlm_costs(model: VLM, image_counts: Any, repeats: int) -> dict[str, Any]:
    """A decoder VLM's compare costs: visual tokens, parameters, and per image count the prefill / decode latency
    and KV cache (what ``ModelKind.costs`` returns)."""
    params = parameter_counts(model)
    out: dict[str, Any] = {"visual_tokens": model.injector.placeholder_tokens(model.visual_tokens),
                           "params_added": params["added"], "params_total": params["total"]}
    for n in image_counts:
        cost = latency(model, n, repeats=repeats)
        out[f"prefill_ms_{n}img"] = cost["prefill_ms"]
        out[f"decode_ms_per_token_{n}img"] = cost["decode_ms_per_token"]
        out[f"kv_bytes_{n}img"] = cost["kv_bytes"]
        out[f"kv_visual_bytes_{n}img"] = cost["kv_visual_bytes"]  # of which cached cross-attention K/V
    return out
