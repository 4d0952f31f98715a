"""Conversations to training batches: chat template, ``<image>`` expansion, labels, padding.

A tokenizer with a chat template of its own (a real LLM's) formats the conversation with it: the template decides
where each answer starts, and the answer's tokens plus the end of its turn (EOS) are the targets. Any other
tokenizer (the built-in BPE) gets a plain-text template, ``<s> user : {question} assistant : {answer} </s>`` per
turn. Each ``<image>`` becomes ``k`` image tokens, where ``k`` is the injection's ``placeholder_tokens(V)``.
Labels are -100 on everything else: prompts, template text, padding and image positions.
An encoder-decoder LLM (``encoder_decoder``, BLIP-2 with Flan-T5) reads the prompt in its encoder and writes the
answer in its decoder: the prompt is tokenized as the tokenizer does (its special tokens, no template), the answer
plus EOS are the decoder targets, ``labels (B, T)``, and a prompt without placeholders gets its images in front,
outside the padding, as ``transformers``' ``Blip2Processor`` places them.
Shapes: ``B`` batch, ``S`` padded sequence length, ``N_all`` images in the batch, ``C H W`` pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100
MEMO_TEXTS = 1 << 16  # texts whose ids a Processor remembers
USER, ASSISTANT = "user :", "assistant :"


@dataclass
class Example:
    """One tokenised sample: ids with expanded image tokens, labels, and its images as tensors."""

    input_ids: list[int]
    labels: list[int]
    images: list[Any] = field(default_factory=list)  # each (C, H, W), or what the transform makes (TiledImage)
    id: str = ""
    targets: list[int] | None = None  # an encoder-decoder's decoder targets (labels then holds no target)
    prefix: int = 0  # leading positions (image tokens) that stay in front of left padding


def record_images(record: dict[str, Any]) -> list[Any]:
    """A LLaVA record's images as a list: ``"images"``, else ``[record["image"]]``, else ``[]``."""
    return list(record.get("images") or ([record["image"]] if record.get("image") is not None else []))


class Processor:
    """Turns LLaVA-format records into ``Example`` s and batches.

    Args:
        tokenizer: holds ``image_token`` as one token.
        transform: image (PIL / path / tensor) -> ``(C, H, W)``.
        tokens_per_image: positions one image takes (``injector.placeholder_tokens(V)``).
        max_length: the LLM's position limit; longer samples raise before any forward pass.
        visual_tokens: ``V`` per image, for the error message.
        image_prefix: raw prompts carry no placeholder; a prompt's image tokens go before its ids, BOS included
            (BLIP-2's and InstructBLIP's processors).
        text_inputs: raw prompts -> extra batch keys (an instruction Q-Former's ``InstructionText``).
        encoder_decoder: the LLM is an encoder-decoder (``injector.encoder_decoder``); see the module docstring.
        bos_after_images: raw prompts without the BOS text get it after their leading image placeholders
            (transformers' ``MllamaProcessor``); otherwise the tokenizer adds its special tokens alone.

    A transform with a ``collate_images`` method (``vlfuse.data.tiles.TileTransform``) batches its own images.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, transform: Callable[[Any], torch.Tensor],
                 tokens_per_image: int, max_length: int, image_token: str = "<image>",
                 visual_tokens: int | None = None, image_prefix: bool = False,
                 text_inputs: Callable[[list[str]], dict[str, torch.Tensor]] | None = None,
                 encoder_decoder: bool = False, bos_after_images: bool = False) -> None:
        self.tok, self.transform = tokenizer, transform
        self.image_prefix, self.text_inputs = image_prefix, text_inputs
        self.k, self.max_length = tokens_per_image, max_length
        self.v = visual_tokens if visual_tokens is not None else tokens_per_image
        self.image_token, self.bos_after_images = image_token, bos_after_images
        self.encoder_decoder = encoder_decoder
        self.image_id = tokenizer.convert_tokens_to_ids(image_token)
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = [tokenizer.eos_token_id]
        self._memo: dict[str, tuple[int, ...]] = {}  # text -> ids; scenes questions and answers repeat

    def _ids(self, text: str) -> list[int]:
        """``text``'s ids without special tokens, memoised (tokenizing was a tenth of a scenes training step)."""
        ids = self._memo.get(text)
        if ids is None:
            if len(self._memo) >= MEMO_TEXTS:
                self._memo.clear()  # bounded: a dataset of unique texts costs no more memory than this
            ids = self._memo[text] = tuple(self.tok(text, add_special_tokens=False).input_ids)
        return list(ids)

    @property
    def chat_template(self) -> bool:
        """Whether the tokenizer formats conversations itself (``tokenizer.chat_template``)."""
        return bool(getattr(self.tok, "chat_template", None))

    def encode(self, record: dict[str, Any]) -> Example:
        """A whole conversation; every ``gpt`` turn (plus EOS) is a target."""
        if self.encoder_decoder:
            return self._encode_seq2seq(record)
        if self.chat_template:
            return self._encode_chat(record)
        ids, labels = list(self.bos), [IGNORE] * len(self.bos)
        for turn in record["conversations"]:
            if turn["from"] == "human":
                piece = self._ids(_user_turn(turn["value"]))
                ids += piece
                labels += [IGNORE] * len(piece)
            else:
                piece = self._ids(turn["value"]) + self.eos
                ids += piece
                labels += piece
        return self._finish(ids, labels, record)

    def encode_prompt(self, prompt: str, images: Sequence[Any] = ()) -> Example:
        """A generation prompt: one user turn followed by the start of the assistant's (``assistant :``)."""
        if self.encoder_decoder:
            return self.encode_text(prompt, images)
        if self.chat_template:
            ids = self._ids(self._render([{"role": "user", "content": prompt}], prompt=True))
        else:
            ids = list(self.bos) + self._ids(_user_turn(prompt))
        ids = self._prefixed(ids, images, "prompt")
        return self._finish(ids, [IGNORE] * len(ids), {"images": list(images), "id": "prompt"})

    def __call__(self, text: str | Sequence[str], images: Sequence[Any] | None = None,
                 padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Raw prompts to a model batch, as the ``transformers`` processor is called (no template is added).

        ``text``: one prompt or a list, each with the family's own image placeholder once per image (LLaVA's
        ``<image>``, Llama 3.2 Vision's ``<|image|>``), tokenized with the tokenizer's special tokens (BOS);
        ``images``: per prompt, the list of its images (PIL, path or tensor); a flat list is the images of a
        single prompt. Returns ``input_ids, attention_mask (B, S)``, ``image_counts (B,)`` and
        ``pixel_values (N_all, C, H, W)`` when there are images, padded on ``padding_side``.

        Example:
            >>> batch = proc(text=["<image>\nwhat is it ?", "<image><image>\nsame ?"],
            ...              images=[[img_a], [img_b, img_c]], padding_side="left")
            >>> new_ids = vlfuse.generate.generate_ids(model, batch, max_new_tokens=16)
        """
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a prompt (str) or a non-empty list of prompts")
        groups = _image_groups(images, len(texts))
        examples = [self.encode_text(t, g, f"prompt {i}") for i, (t, g) in enumerate(zip(texts, groups))]
        batch = self.collate(examples, padding_side)
        del batch["labels"]  # raw prompts have no targets
        if self.text_inputs is not None:
            batch.update(self.text_inputs(texts))
        return batch

    def encode_text(self, text: str, images: Sequence[Any] = (), name: str = "prompt") -> Example:
        """One raw prompt (special tokens added as the tokenizer adds them, placeholders expanded); no targets."""
        if self.bos_after_images and self.tok.bos_token and self.tok.bos_token not in text:
            lead = 0
            while text.startswith(self.image_token, lead):
                lead += len(self.image_token)
            text = text[:lead] + self.tok.bos_token + text[lead:]  # as transformers' build_string_from_input
        ids = self._prefixed(self.tok(text).input_ids, images, name)  # BOS where the transformers processor puts it
        return self._finish(ids, [IGNORE] * len(ids), {"images": list(images), "id": name})

    def _prefixed(self, ids: list[int], images: Sequence[Any], name: str) -> list[int]:
        """``ids`` with one image placeholder in front (``image_prefix``, BLIP-2), else as they are."""
        if not self.image_prefix:
            return ids
        if self.image_id in ids or len(images) > 1:
            raise ValueError(f"{name}: this model's processor puts the image's tokens before the text itself "
                             f"(BLIP-2); give at most one image per prompt and no {self.image_token} in the text")
        return [self.image_id] * len(images) + ids  # one placeholder, expanded to the image's tokens by _finish

    def _encode_seq2seq(self, record: dict[str, Any]) -> Example:
        """One question and its answer: the question is the encoder's input, the answer (plus EOS) the targets."""
        turns = record["conversations"]
        if [t["from"] for t in turns] != ["human", "gpt"]:
            raise ValueError(f"sample {record.get('id', '?')!r} has turns {[t['from'] for t in turns]}; an "
                             "encoder-decoder LLM trains on one human turn followed by one gpt turn")
        example = self.encode_text(turns[0]["value"], record_images(record), str(record.get("id", "?")))
        example.targets = self._ids(turns[1]["value"]) + self.eos
        return example

    def _render(self, messages: list[dict[str, str]], prompt: bool) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)

    def _encode_chat(self, record: dict[str, Any]) -> Example:
        """Render with the tokenizer's template; an answer's span is what its turn adds after the prompt up to
        its content's end, then the template's closing text up to EOS (EOS itself when the template has none)."""
        roles = {"human": "user", "gpt": "assistant", "system": "system"}
        messages = [{"role": roles.get(t["from"], t["from"]), "content": t["value"]} for t in record["conversations"]]
        whole = self._render(messages, False)
        ids: list[int] = []
        labels: list[int] = []
        cursor = 0  # characters of ``whole`` encoded so far
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt, full = self._render(messages[:i], True), self._render(messages[: i + 1], False)
            end = full.find(m["content"], len(prompt)) + len(m["content"])
            if not (whole.startswith(full) and full.startswith(prompt)) or end < len(m["content"]):
                raise ValueError(f"sample {record.get('id', '?')!r}: the tokenizer's chat template does not render "
                                 "a conversation as each prompt followed by its answer; use a template that does, "
                                 "or remove chat_template from tokenizer_config.json to use the plain one")
            piece, answer, tail = (self._ids(whole[a:b]) for a, b in
                                   ((cursor, len(prompt)), (len(prompt), end), (end, len(full))))
            closing = tail[: tail.index(self.eos[0]) + 1] if self.eos[0] in tail else self.eos
            after = tail[len(closing):] if closing is not self.eos else tail
            ids += piece + answer + closing + after
            labels += [IGNORE] * len(piece) + answer + closing + [IGNORE] * len(after)
            cursor = len(full)
        rest = self._ids(whole[cursor:])
        return self._finish(ids + rest, labels + [IGNORE] * len(rest), record)

    def _finish(self, ids: list[int], labels: list[int], record: dict[str, Any]) -> Example:
        images = record_images(record)
        rid = str(record.get("id", "?"))
        n_place = prefix = ids.count(self.image_id)
        if self.encoder_decoder and images and not n_place:  # BLIP-2's layout: the images, then the prompt
            n_place = prefix = len(images)
            ids, labels = [self.image_id] * prefix + ids, [IGNORE] * prefix + labels
        elif self.encoder_decoder and ids[:n_place] != [self.image_id] * n_place:
            prefix = 0  # placeholders inside the text stay where they are, padding goes before all
        if n_place != len(images):
            raise ValueError(
                f"sample {rid!r} has {n_place} {self.image_token} placeholder(s) but {len(images)} image(s); "
                f"put exactly one {self.image_token} in the text for each image"
            )
        total = len(ids) - n_place + n_place * self.k
        if total > self.max_length:
            raise ValueError(
                f"sample {rid!r} is too long for the LLM: {len(ids) - n_place} text tokens + {n_place} image(s) x "
                f"{self.k} visual tokens = {total} tokens > {self.max_length} positions; use fewer or smaller images, "
                "a connector with fewer tokens, or a shorter text"
            )
        if n_place:
            ids, labels = self._expand(ids, labels)
        prefix = prefix * self.k if self.encoder_decoder else 0
        return Example(ids, labels, [self.transform(im) for im in images], rid, prefix=prefix)

    def _expand(self, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        out_ids: list[int] = []
        out_labels: list[int] = []
        for i, lab in zip(ids, labels):
            if i == self.image_id:
                out_ids += [i] * self.k
                out_labels += [IGNORE] * self.k
            else:
                out_ids.append(i)
                out_labels.append(lab)
        return out_ids, out_labels

    def collate(self, examples: Sequence[Example], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad a list of examples into a batch: ``input_ids, attention_mask, labels (B, S)``,
        ``pixel_values (N_all, C, H, W)`` (absent when no sample has an image) and ``image_counts (B,)``."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side={padding_side!r}: choose 'left' (generation) or 'right' (training)")
        return collate(examples, self.tok.pad_token_id, padding_side, getattr(self.transform, "collate_images", None))


def _image_groups(images: Sequence[Any] | None, n_texts: int) -> list[list[Any]]:
    """``images`` as one list per prompt: None -> no images; a flat list is the images of a single prompt."""
    if images is None:
        return [[] for _ in range(n_texts)]
    images = list(images)
    nested = all(isinstance(g, (list, tuple)) for g in images)
    if not nested:
        if n_texts != 1:
            raise ValueError(f"images is a flat list but there are {n_texts} prompts; give one list of images per "
                             "prompt, e.g. images=[[img_a], [img_b, img_c]] ([] for a prompt without images)")
        return [images]
    if len(images) != n_texts:
        raise ValueError(f"{len(images)} image lists for {n_texts} prompts; give one list per prompt "
                         "([] for a prompt without images)")
    return [list(g) for g in images]


def _user_turn(text: str) -> str:
    """``user : {text} assistant :`` with single spaces (a byte-level BPE makes a token of each extra space)."""
    return " ".join(p for p in (USER, text.strip(), ASSISTANT) if p)


def collate(examples: Sequence[Example], pad_id: int, padding_side: str = "right",
            collate_images: Callable[[list[list[Any]]], dict[str, torch.Tensor]] | None = None,
            ) -> dict[str, torch.Tensor]:
    """See ``Processor.collate``. A sample's ``prefix`` stays in front of its left padding; decoder ``targets``
    (an encoder-decoder's) become ``labels (B, T)``, right-padded with -100; ``collate_images`` (each sample's
    images -> batch keys) replaces the stacking."""
    s = max(len(e.input_ids) for e in examples)
    b = len(examples)
    ids = torch.full((b, s), pad_id, dtype=torch.long)
    labels = torch.full((b, s), IGNORE, dtype=torch.long)
    mask = torch.zeros((b, s), dtype=torch.long)
    for i, e in enumerate(examples):
        n, p = len(e.input_ids), e.prefix
        row = torch.tensor(e.input_ids), torch.tensor(e.labels)
        if padding_side == "left":  # (prefix, padding, rest): the layout of transformers' Blip2Processor
            for dst, src in ((ids, row[0]), (labels, row[1]), (mask, torch.ones(n, dtype=torch.long))):
                dst[i, :p], dst[i, s - n + p:] = src[:p], src[p:]
        else:
            ids[i, :n], labels[i, :n], mask[i, :n] = row[0], row[1], 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels,
             "image_counts": torch.tensor([len(e.images) for e in examples])}
    if any(e.targets is not None for e in examples):
        targets = [e.targets or [] for e in examples]
        labels = torch.full((b, max(map(len, targets))), IGNORE, dtype=torch.long)  # (B, T)
        for i, t in enumerate(targets):
            labels[i, :len(t)] = torch.tensor(t, dtype=torch.long)
        batch["labels"] = labels
    images = [im for e in examples for im in e.images]
    if images and collate_images is not None:
        batch.update(collate_images([list(e.images) for e in examples]))  # e.g. tiles in a padded slot layout
    elif images:
        batch["pixel_values"] = torch.stack(images)  # (N_all, C, H, W)
    return batch
