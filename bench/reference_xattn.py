"""Decode ms/token of ``transformers``' own Mllama and IDEFICS ``generate`` vs vlfuse, on the same weights.

For each family (``reference_models.build_pair``): a random ``MllamaForConditionalGeneration`` /
``IdeficsForVisionText2Text`` is saved and loaded into vlfuse with ``VLM.from_transformers``, so both sides are
the same network. For 1, 2, 4, 8, 16 images (one tile each), one prompt (``<image> word`` per image, then a
question) is generated greedily by ``hf.generate`` (``do_sample=False``, no EOS stop, ``<image>`` suppressed) and
by ``vlfuse.generate.generate_ids`` (the same: argmax, no EOS stop, ``<image>`` never generated).

Method (timing hooks, ``TokenClock``): each side's whole ``G``-token generate call is clocked at the moment each
new token reaches the host: ``transformers`` hands every token to its ``streamer`` (``put``, after the token was
copied to the CPU, which waits for the GPU), vlfuse to its ``on_token`` callback (which calls
``torch.cuda.synchronize()`` first). Decode ms/token = ``(t_G - t_1) / (G - 1)``: the prefill and the image encoding,
before the first token, are left out; "first token ms" is ``t_1`` from the call's start (prefill + vision + one
sampling). Median of ``--repeats`` calls after one warm-up call per side, the sides alternating, images in
increasing order. "tokens equal" counts the leading greedy tokens on which the two sides agree (fp32: all G; bf16
may part on a near-tie): equal tokens mean both timed the same work.

Run (tiny CPU config)::

    PYTHONPATH=src .venv/bin/python bench/reference_xattn.py --threads 1

GPU (1B-class text model, bf16)::

    PYTHONPATH=src python3 bench/reference_xattn.py --preset 1b --device cuda --dtype bfloat16

Flags ``--hidden --layers --heads --kv-heads --intermediate --vocab --cross-every --vision`` override the preset.
Shapes: ``N`` images, ``T`` prompt length, ``G`` new tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_models import (  # a sibling script (bench/ is no package)
    FAMILIES,
    PRESETS,
    Size,
    build_pair,
    hf_inputs,
    pixels,
    prompt_ids,
    vlfuse_batch,
)

from vlfuse.generate import generate_ids


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class TokenClock:
    """When each new token reaches the host: a ``transformers`` streamer (``put`` / ``end``) and a vlfuse
    ``on_token`` callback in one. ``times[k]``: seconds since ``start()`` at which new token ``k`` was there."""

    def __init__(self, device: str) -> None:
        self.device, self.times, self.t0, self.prompt_seen = device, [], 0.0, False

    def start(self) -> TokenClock:
        _sync(self.device)
        self.times, self.prompt_seen, self.t0 = [], False, time.perf_counter()
        return self

    def put(self, value: torch.Tensor) -> None:  # transformers: the prompt first, then each token, on the host
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.times.append(time.perf_counter() - self.t0)

    def end(self) -> None:
        pass

    def __call__(self, token: torch.Tensor) -> None:  # vlfuse's on_token: the token is on the device
        _sync(self.device)
        self.times.append(time.perf_counter() - self.t0)

    def decode_ms(self) -> float:
        """Mean ms between consecutive new tokens: the prefill (and image encoding) before the first is excluded."""
        return 1000 * (self.times[-1] - self.times[0]) / (len(self.times) - 1)


def hf_generate(hf: Any, inputs: dict[str, torch.Tensor], image_id: int, new_tokens: int,
                clock: TokenClock | None = None) -> torch.Tensor:
    """``transformers`` greedy generate -> ``(1, G)`` new tokens."""
    out = hf.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, suppress_tokens=[image_id],
                      pad_token_id=hf.config.get_text_config().pad_token_id, streamer=clock)
    return out[:, inputs["input_ids"].shape[1]:]


def ours_generate(model: Any, batch: dict[str, torch.Tensor], new_tokens: int,
                  clock: TokenClock | None = None) -> torch.Tensor:
    """vlfuse greedy generate -> ``(1, G)`` new tokens (EOS id -1: never stops early)."""
    return generate_ids(model, batch, max_new_tokens=new_tokens, eos_token_id=-1, on_token=clock)


def decode_pair(runs: dict[str, Callable[[int, TokenClock], torch.Tensor]], new_tokens: int, repeats: int,
                device: str) -> dict[str, Any]:
    """Run each side ``1 + repeats`` times (the first a warm-up), alternating; medians of the clocked times."""
    if new_tokens < 2:
        raise ValueError(f"--new-tokens {new_tokens} must be >= 2 (decode ms/token is timed between new tokens)")
    clock = TokenClock(device)
    tokens = {side: run(new_tokens, clock.start()) for side, run in runs.items()}  # warm-up; the tokens compared
    decode: dict[str, list[float]] = {side: [] for side in runs}
    first: dict[str, list[float]] = {side: [] for side in runs}
    for _ in range(repeats):
        for side, run in runs.items():
            run(new_tokens, clock.start())
            if len(clock.times) != new_tokens:
                raise RuntimeError(f"{side} gave {len(clock.times)} tokens to the clock, expected {new_tokens}")
            decode[side].append(clock.decode_ms())
            first[side].append(1000 * clock.times[0])
    out: dict[str, Any] = {side: {"decode_ms": statistics.median(decode[side]),
                                  "first_ms": statistics.median(first[side])} for side in runs}
    a, b = (tokens[side].cpu()[0] for side in runs)
    differ = (a != b).nonzero()
    out["equal"] = int(differ[0]) if len(differ) else len(a)
    return out


def measure_pair(family: str, hf: Any, ours: Any, tok: Any, counts: list[int],
                 args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per image count: both sides generate the same prompt."""
    dtype, image_id = getattr(torch, args.dtype), ours.injector.image_token_id
    rows = []
    for n in counts:
        ids = prompt_ids(tok, n)
        images = pixels(ours, n, args.device, dtype)
        inputs, batch = hf_inputs(family, tok, ids, images), vlfuse_batch(ids, images)
        runs = {"hf": lambda k, clock, inputs=inputs: hf_generate(hf, inputs, image_id, k, clock),
                "vlfuse": lambda k, clock, batch=batch: ours_generate(ours, batch, k, clock)}
        r = decode_pair(runs, args.new_tokens, args.repeats, args.device)
        rows.append({"family": family, "images": n, "prompt": ids.shape[1], "keys": n * ours.visual_tokens, **r})
        print(f"[{family}] {n} images: HF {r['hf']['decode_ms']:.2f} ms/token, vlfuse "
              f"{r['vlfuse']['decode_ms']:.2f}", file=sys.stderr, flush=True)
    return rows


def measure_family(family: str, size: Size, counts: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build the pair (timing the build), measure it, free it."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"vlfuse-{family}-") as folder:
        hf, ours, tok = build_pair(family, size, Path(folder), getattr(torch, args.dtype), args.device)
    built_s = time.perf_counter() - t0
    print(f"[{family}] built and converted in {built_s:.0f} s", file=sys.stderr, flush=True)
    rows = [{**row, "built_s": built_s} for row in measure_pair(family, hf, ours, tok, counts, args)]
    del hf, ours
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def table(rows: list[dict[str, Any]], size: Size, args: argparse.Namespace) -> str:
    """The markdown report: a header line, then one row per family and image count."""
    name = {"mllama": "Mllama", "idefics": "IDEFICS"}
    lines = [f"Text model: width {size.hidden}, {size.layers} self-attention layers, {size.heads} heads "
             f"({size.kv_heads} kv heads in Mllama), FFW {size.intermediate}, vocabulary {size.vocab}, a "
             f"cross-attention layer per {size.cross_every} self-attention layers; vision {size.vision}; "
             f"{args.new_tokens} new tokens, median of {args.repeats}; device {args.device}, {args.dtype}, "
             f"torch {torch.__version__}, threads {torch.get_num_threads()}", "",
             "| model | images | prompt tokens | visual tokens | first token ms HF / vlfuse | "
             "decode ms/token HF | vlfuse | HF / vlfuse | tokens equal |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        hf, ours = r["hf"], r["vlfuse"]
        lines.append(f"| {name[r['family']]} | {r['images']} | {r['prompt']} | {r['keys']} | "
                     f"{hf['first_ms']:.1f} / {ours['first_ms']:.1f} | {hf['decode_ms']:.2f} | "
                     f"{ours['decode_ms']:.2f} | {hf['decode_ms'] / ours['decode_ms']:.2f}x | "
                     f"{r['equal']}/{args.new_tokens} |")
    built = {r["family"]: r["built_s"] for r in rows}
    lines += ["", "Build + save + convert: " + ", ".join(f"{name[f]} {s:.0f} s" for f, s in built.items())]
    return "\n".join(lines)


def size_from(args: argparse.Namespace) -> Size:
    """The preset with the flags given on top of it."""
    size = PRESETS[args.preset]
    fields = ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab", "cross_every", "vision")
    changes = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    return dataclasses.replace(size, **changes)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    for flag in ("hidden", "layers", "heads", "kv-heads", "intermediate", "vocab", "cross-every"):
        p.add_argument(f"--{flag}", type=int, help="override the preset")
    p.add_argument("--vision", choices=["tiny", "real"], help="override the preset's vision towers")
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: mllama,idefics")
    p.add_argument("--images", default="1,2,4,8,16", help="image counts (default 1,2,4,8,16)")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", help="also write the markdown table to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = size_from(args)
    counts = [int(n) for n in args.images.split(",")]
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    rows = [row for family in families for row in measure_family(family, size, counts, args)]
    report = table(rows, size, args)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
