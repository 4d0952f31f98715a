"""What a dual encoder does besides training: answering by ranking, retrieval scores, costs, persistence.

Ranking: each question's candidate answers become statements (``vlfuse.data.statements``), every distinct
statement is embedded once, and the answer is the candidate whose statement is closest to the image. A record
with other than one image (``multi``: "which image has more ...") cannot be put as one statement about one
image; it gets the empty answer, counted wrong.
Shapes: ``N`` images, ``K`` distinct statements, ``E`` embedding width.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vlfuse.config import from_dict, to_dict
from vlfuse.data.collate import record_images
from vlfuse.data.statements import question_text, statement

TEXT_BATCH = 256  # statements embedded at once


@torch.no_grad()
def embed_texts(model: Any, texts: Sequence[str]) -> torch.Tensor:
    """``K`` texts -> ``(K, E)`` normalised embeddings, in batches."""
    proc, device = model.processor(), next(model.parameters()).device
    out = []
    for i in range(0, len(texts), TEXT_BATCH):
        b = proc.texts(list(texts[i:i + TEXT_BATCH]))
        out.append(model.encode_texts(b["input_ids"].to(device), b["attention_mask"].to(device)))
    return torch.cat(out)


@torch.no_grad()
def rank_answers(model: Any, records: Sequence[dict[str, Any]], candidates: dict[str, list[str]]) -> list[str]:
    """One answer per record: the candidate of its skill whose statement scores highest against its image."""
    proc, device = model.processor(), next(model.parameters()).device
    was_training = model.training
    model.eval()
    single = [i for i, r in enumerate(records) if len(record_images(r)) == 1]
    options = {}
    for i in single:
        skill = str(records[i].get("skill", "all"))
        if not candidates.get(skill):
            raise ValueError(f"record {records[i].get('id')!r}: no candidate answers for skill {skill!r}; "
                             "answering by ranking needs the answer vocabulary of each skill")
        q = question_text(records[i])
        options[i] = [(a, statement(q, a)) for a in candidates[skill]]
    texts = sorted({s for opts in options.values() for _, s in opts})
    index = {s: k for k, s in enumerate(texts)}
    answers = [""] * len(records)
    if single:
        text_emb = embed_texts(model, texts)  # (K, E)
        images = model.encode_images(proc.images([record_images(records[i])[0] for i in single]).to(device))
        for row, i in enumerate(single):
            cols = torch.tensor([index[s] for _, s in options[i]], device=device)
            best = int((text_emb[cols] @ images[row]).argmax())
            answers[i] = options[i][best][0]
    model.train(was_training)
    return answers


@torch.no_grad()
def pair_scores(model: Any, records: Sequence[dict[str, Any]], batch_size: int, rerank: int = 0) -> dict[str, Any]:
    """``{"i2t": (N, N), "t2i": (N, N)}``: the cosine of every image with every caption."""
    if rerank:
        raise ValueError("--rerank re-scores with a matching head; a dual encoder has none: leave it at 0")
    proc, device = model.processor(), next(model.parameters()).device
    was_training = model.training
    model.eval()
    images, texts = [], []
    for i in range(0, len(records), batch_size):
        b = {k: v.to(device) for k, v in proc.collate([proc.encode(r) for r in records[i:i + batch_size]]).items()}
        images.append(model.encode_images(b["pixel_values"]))  # (n, E)
        texts.append(model.encode_texts(b["input_ids"], b["attention_mask"]))  # (n, E)
    model.train(was_training)
    sim = torch.cat(images) @ torch.cat(texts).t()  # (N, N), row = image
    return {"i2t": sim, "t2i": sim.t()}


@torch.no_grad()
def dual_costs(model: Any, image_counts: Sequence[int], repeats: int) -> dict[str, Any]:
    """Parameters (``added``: the image head, the text projection and the temperature) and the median time to
    embed ``n`` images and one text; no decode, no cache."""
    device = next(model.parameters()).device
    count = lambda *ms: sum(p.numel() for m in ms for p in m.parameters())  # noqa: E731
    added = count(model.head, model.text.proj) + sum(p.numel() for n, p in model.named_parameters(recurse=False))
    out: dict[str, Any] = {"visual_tokens": 1, "params_added": added, "params_total": count(model)}
    size, chans = model.encoder.image_size, model.encoder.in_channels
    text = model.processor().texts(["a red circle ."])
    for n in image_counts:
        pixels = torch.zeros(n, chans, size, size, device=device)
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            model.encode_images(pixels)
            model.encode_texts(text["input_ids"].to(device), text["attention_mask"].to(device))
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(1000 * (time.perf_counter() - t0))
        out.update({f"prefill_ms_{n}img": sorted(times[1:])[len(times[1:]) // 2], f"decode_ms_per_token_{n}img": 0.0,
                    f"kv_bytes_{n}img": 0, f"kv_visual_bytes_{n}img": 0})
    return out


def portable_config(model: Any) -> dict[str, Any]:
    """The config with both towers' transformers configs inlined, so loading needs none of the original folders."""
    cfg = to_dict(model.config)
    cfg["tokenizer"]["path"] = None
    cfg["text"].update(path=None, config=model.text.tower.config.to_dict())
    if hasattr(model.encoder, "hf_config"):
        cfg["encoder"].update(config=model.encoder.hf_config(), image_mean=list(model.encoder.image_mean),
                              image_std=list(model.encoder.image_std))
        if "path" in cfg["encoder"]:
            cfg["encoder"]["path"] = None
    return cfg


def save_dual(model: Any, directory: str | Path) -> Path:
    """``config.json`` + ``model.safetensors`` + tokenizer files, atomically (LoRA merged into a copy first)."""
    from safetensors.torch import save_model

    from vlfuse.train.checkpoint import FORMAT_VERSION, atomic_dir
    from vlfuse.train.policy import has_lora, merge_lora

    if has_lora(model):
        model = merge_lora(copy.deepcopy(model))

    def write(tmp: Path) -> None:
        meta = {"format": "vlfuse", "version": FORMAT_VERSION, "model": portable_config(model)}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        model.tokenizer.save_pretrained(str(tmp))
        save_model(model, str(tmp / "model.safetensors"))

    return atomic_dir(Path(directory), write)


def load_dual(cls: Any, directory: str | Path, dtype: torch.dtype | str | None, device: str | torch.device) -> Any:
    """Rebuild a saved dual encoder on ``meta`` and assign its safetensors weights (strict)."""
    from transformers import AutoTokenizer

    from vlfuse.hub import NO_REMOTE_CODE, check_folder
    from vlfuse.loading import build_empty, load_weights, read_safetensors, resolve_dtype
    from vlfuse.train.checkpoint import read_meta

    meta = read_meta(directory)
    folder = check_folder(directory, "vlfuse model folder", weights=True)
    config = from_dict(_config_cls(), meta["model"])
    target = resolve_dtype(dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **NO_REMOTE_CODE)
    model = build_empty(lambda: cls.from_config(config, tokenizer=tokenizer), target)
    return load_weights(model, read_safetensors(folder, ["model.safetensors"]), dtype=target, device=device)


def _config_cls() -> Any:
    from vlfuse.kinds.dual_encoder import DualEncoderConfig

    return DualEncoderConfig
