"""Checkpoint loading: ``VLM.from_transformers`` against ``LlavaForConditionalGeneration.from_pretrained``.

Saves a random LLaVA (a CLIP-ViT-B/16-like tower at 224 px + a ~390M-parameter Llama, bf16 safetensors, built
locally, nothing downloaded), then loads it in a fresh subprocess per measurement, so each peak is its own.
Per load: wall time of the load call; the time until every weight has been read once (a memory-mapped weight is
read from disk only when first used, as by a first forward); peak RSS of the process (``VmHWM`` in
``/proc/self/status``; ``ru_maxrss`` would carry the parent's peak across fork and exec) and the RSS after the
imports (psutil), whose difference is what loading added (Linux only). Also measured: the former
``from_transformers`` (a float32 model built with random init, then the weights copied in). Prints one row per
loader and the ratios to transformers, all from the same run.
Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/load_checkpoint.py [--repeats 2] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

WORDS = ["what", "color", "is", "the", "circle", "square", "red", "blue"]
VISION = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
          "image_size": 224, "patch_size": 16}  # CLIP ViT-B/16: 86M parameters
TEXT = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 24, "num_attention_heads": 16,
        "num_key_value_heads": 16, "max_position_embeddings": 2048, "tie_word_embeddings": False}  # + 32000 vocab
LOADERS = ("transformers", "vlfuse", "vlfuse-eager")


def save_llava(path: Path) -> int:
    """A random bf16 LLaVA in ``path`` (weights + byte-level BPE tokenizer); returns its parameter count."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from vlfuse.data.tokenizer import build_tokenizer

    tok = build_tokenizer(WORDS)
    vocab = 32000  # a real vocabulary's size: the embedding and head weigh what they would
    config = LlavaConfig(vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(vocab_size=vocab, **TEXT),
                         image_token_id=tok.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def measure(loader: str, path: str) -> dict[str, float]:
    """Run in the subprocess: load once, report seconds and memory (MiB)."""
    torch.set_num_threads(1)
    from transformers import LlavaForConditionalGeneration

    from vlfuse import VLM

    base = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if loader == "transformers":
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.bfloat16)
    elif loader == "vlfuse":
        model = VLM.from_transformers(path, dtype=torch.bfloat16)
    else:  # the former from_transformers: a randomly initialised (float32) model, then the weights copied in
        from transformers import AutoConfig

        from vlfuse.convert import CONVERTERS

        out = CONVERTERS["llava"](Path(path), AutoConfig.from_pretrained(path, trust_remote_code=False))
        model = VLM.from_config(out.config, tokenizer=out.tokenizer)
        model.load_state_dict(out.state, strict=False)  # lm_head etc. all present: the same keys as before
    seconds = time.perf_counter() - start
    # the weights may still be memory-mapped, not read: read every one once (as a first forward would)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.sum()
    touched = time.perf_counter() - start
    status = Path("/proc/self/status").read_text().splitlines()
    peak = int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) * 1024  # kB -> bytes
    return {"seconds": seconds, "read_s": touched, "peak_mib": peak / 2**20, "added_mib": (peak - base) / 2**20}


def run_one(loader: str, path: Path) -> dict[str, float]:
    """``loader`` in a fresh interpreter (one thread); its JSON line back."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--measure", loader, "--dir", str(path)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where to save the model (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=2, help="loads per loader, interleaved; medians printed")
    parser.add_argument("--measure", choices=[*LOADERS, "save"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure == "save":
        print(json.dumps({"parameters": save_llava(args.dir)}))
        return
    if args.measure:
        print(json.dumps(measure(args.measure, str(args.dir))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dir or Path(tmp) / "llava"
        n = run_one("save", path)["parameters"]  # in a subprocess too: this process stays small
        size = sum(f.stat().st_size for f in path.glob("*.safetensors")) / 2**20
        print(f"random LLaVA: {n / 1e6:.0f}M parameters, {size:.0f} MiB of bf16 safetensors; 1 thread; "
              f"median of {args.repeats} loads each")
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in LOADERS}
        for _ in range(args.repeats):
            for loader in LOADERS:
                runs[loader].append(run_one(loader, path))
        med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
        ref = med["transformers"]
        print(f"{'loader':<48} {'load s':>7} {'+ read s':>9} {'peak RSS MiB':>13} {'added MiB':>10} {'load x':>7} "
              f"{'added x':>8}")
        names = {"transformers": "LlavaForConditionalGeneration.from_pretrained", "vlfuse": "VLM.from_transformers",
                 "vlfuse-eager": "former from_transformers (fp32 init, then copy)"}
        for k, m in med.items():
            print(f"{names[k]:<48} {m['seconds']:>7.2f} {m['read_s']:>9.2f} {m['peak_mib']:>13.0f} "
                  f"{m['added_mib']:>10.0f} "
                  f"{m['seconds'] / ref['seconds']:>7.2f} {m['added_mib'] / ref['added_mib']:>8.2f}")


if __name__ == "__main__":
    main()
