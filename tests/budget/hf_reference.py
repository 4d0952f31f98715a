"""transformers' own count of the tokens an image expands to, per family, with the released settings.

Everything is built in process: image processors (the PIL backends; this venv has no torchvision) with the values
of each released ``preprocessor_config.json`` written out, and a tiny ``tokenizers`` WordLevel tokenizer wrapped in
``PreTrainedTokenizerFast`` whose added tokens are exactly the special strings the processor writes, so every
special string is one id, as in the released tokenizers. ``"\\n"`` and ``"\\n\\n"`` are added tokens too (leftmost
longest match), as both are single tokens in the Llama 3, SmolLM2 and Gemma tokenizers.

Where a processor cannot be built here, the reference is the image processor plus the processor's own expansion
code (named in each builder): the Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision and InternVL processors require a video
processor (torchvision), so a subclass declares no video attribute and everything else runs unchanged; SmolVLM's
processor needs ``num2words``, so its module's ``get_image_prompt_string`` is called with the image processor's
rows/cols; ``PixtralProcessor``'s module imports torchvision, so its ``replace_image_token`` is retyped here
(``pixtral_expansion``) and applied to the image processor's ``image_sizes``; ``FuyuProcessor.__call__`` breaks with
the PIL image processor, so the grid-sizing lines of ``_process_images`` run on the image processor's output and the
real ``replace_image_token`` expands it. Every family transformers ships is compared; none is formula-only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from types import SimpleNamespace

import transformers as tf
from PIL import Image
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from vlfuse.budget.families.llava import NEXT_PINPOINTS

# pixel values never change a shape: skip rescale/normalize and resample with NEAREST, several times faster
FAST = {"do_rescale": False, "do_normalize": False, "resample": tf.image_utils.PILImageResampling.NEAREST}
Ref = Callable[[int, int], dict]  # (W, H) -> {"tokens": ..., optional "tiles"/"grid"/"text_tokens"}


def tokenizer(specials: list[str], **extra_special_tokens: str) -> tf.PreTrainedTokenizerFast:
    """A WordLevel tokenizer whose vocabulary is ``[UNK]`` plus ``specials`` as added tokens."""
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                      extra_special_tokens=extra_special_tokens or None)


def without_video(cls: type) -> type:
    """``cls`` minus its video processor slot (video processors import torchvision)."""
    return type(f"{cls.__name__}NoVideo", (cls,), {"get_attributes": classmethod(lambda c: ["image_processor",
                                                                                               "tokenizer"])})


def image(w: int, h: int) -> Image.Image:
    return Image.new("RGB", (w, h))


def _length(processor, text: str) -> Ref:
    """Reference = length of ``input_ids`` for ``text`` holding one image placeholder."""

    def ref(w: int, h: int) -> dict:
        return {"tokens": len(processor(images=[image(w, h)], text=[text])["input_ids"][0])}

    return ref


@cache
def qwen(cls_name: str) -> Ref:
    """Qwen2-VL-7B-Instruct / Qwen2.5-VL-7B-Instruct: min_pixels 3136, max_pixels 12845056, patch 14, merge 2."""
    tok = tokenizer(["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"])
    ip = tf.Qwen2VLImageProcessorPil(**FAST, min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2)
    proc = without_video(getattr(tf, cls_name))(image_processor=ip, tokenizer=tok)

    def ref(w: int, h: int) -> dict:
        out = proc(images=[image(w, h)], text=["<|vision_start|><|image_pad|><|vision_end|>"])
        _, gh, gw = (int(x) for x in out["image_grid_thw"][0])
        return {"tokens": len(out["input_ids"][0]), "grid": (gw // 2, gh // 2)}

    return ref


@cache
def llava15() -> Ref:
    """llava-1.5-7b-hf: shortest_edge 336, crop 336; patch 14, "default" strategy, 1 additional (CLS) token."""
    ip = tf.CLIPImageProcessorPil(**FAST, size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = tf.LlavaProcessor(image_processor=ip, tokenizer=tokenizer(["<image>"]), patch_size=14,
                             vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return _length(proc, "<image>")


@cache
def llava_next() -> Ref:
    """llava-v1.6-mistral-7b-hf: 336 px tiles, the five default pinpoints; patch 14, "default", 1 additional."""
    ip = tf.LlavaNextImageProcessorPil(**FAST, size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                       image_grid_pinpoints=[list(p) for p in NEXT_PINPOINTS])
    proc = tf.LlavaNextProcessor(image_processor=ip, tokenizer=tokenizer(["<image>"]), patch_size=14,
                                 vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return _length(proc, "<image>")


@cache
def llava_onevision() -> Ref:
    """llava-onevision-qwen2-7b-ov-hf: 384 px, 36 pinpoints (class default), 729 tokens, "full", anyres_max_9."""
    ip = tf.LlavaOnevisionImageProcessorPil(**FAST, size={"height": 384, "width": 384})
    proc = without_video(tf.LlavaOnevisionProcessor)(
        image_processor=ip, tokenizer=tokenizer(["<image>", "<video>"]), num_image_tokens=729,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    return _length(proc, "<image>")


@cache
def idefics2() -> Ref:
    """idefics2-8b: do_image_splitting True, shortest 378 / longest 980, 64 tokens per view."""
    ip = tf.Idefics2ImageProcessorPil(**FAST, do_image_splitting=True, size={"shortest_edge": 378, "longest_edge": 980})
    tok = tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>"])
    return _length(tf.Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=64), "<image>")


def _idefics3_tokenizer() -> tf.PreTrainedTokenizerFast:
    tags = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    return tokenizer(["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>", "\n\n", "\n",
                      *tags])


@cache
def idefics3() -> Ref:
    """Idefics3-8B-Llama3: longest_edge 1456, tiles of 364, 169 tokens per view."""
    ip = tf.Idefics3ImageProcessorPil(**FAST, size={"longest_edge": 1456}, max_image_size={"longest_edge": 364})
    proc = tf.Idefics3Processor(image_processor=ip, tokenizer=_idefics3_tokenizer(), image_seq_len=169)
    return _length(proc, "<image>")


@cache
def smolvlm() -> Ref:
    """SmolVLM-Instruct: longest_edge 1536, tiles of 384, 81 tokens per view (image processor + the processor
    module's ``get_image_prompt_string``)."""
    from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

    ip = tf.SmolVLMImageProcessorPil(**FAST, size={"longest_edge": 1536}, max_image_size={"longest_edge": 384})
    tok = _idefics3_tokenizer()

    def ref(w: int, h: int) -> dict:
        out = ip(images=[[image(w, h)]], return_row_col_info=True)
        rows, cols = out["rows"][0][0], out["cols"][0][0]
        text = get_image_prompt_string(rows, cols, 81, fake_token_around_image="<fake_token_around_image>",
                                       image_token="<image>", global_image_token="<global-img>")
        return {"tokens": len(tok(text)["input_ids"]), "tiles": rows * cols}

    return ref


@cache
def mllama() -> Ref:
    """Llama-3.2-11B-Vision-Instruct: 560 px tiles, at most 4. Text side: ``<|image|>`` ids in the processor
    output; tiles: the image processor's ``num_tiles``."""
    ip = tf.MllamaImageProcessorPil(**FAST, size={"height": 560, "width": 560}, max_image_tiles=4)
    tok = tokenizer(["<|image|>", "<|begin_of_text|>"], bos_token="<|begin_of_text|>")
    proc = tf.MllamaProcessor(image_processor=ip, tokenizer=tok)

    def ref(w: int, h: int) -> dict:
        out = proc(images=[image(w, h)], text=["<|image|>"])
        n_image = list(out["input_ids"][0]).count(tok.convert_tokens_to_ids("<|image|>"))
        tiles = ip(images=[[image(w, h)]])["num_tiles"][0][0]
        return {"tokens": n_image, "tiles": tiles}

    return ref


@cache
def gemma3(pan_and_scan: bool = False) -> Ref:
    """gemma-3-4b-it: 896 px, 256 soft tokens. Without pan-and-scan the reference is the full length; with it,
    the number of crops and of soft tokens (the sentence around the crops depends on Gemma's tokenizer)."""
    tok = tokenizer(["<start_of_image>", "<end_of_image>", "<image_soft_token>", "\n\n", "\n", "<bos>"],
                    boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>")
    ip = tf.Gemma3ImageProcessorPil(**FAST, size={"height": 896, "width": 896})
    proc = tf.Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=256)
    soft = tok.convert_tokens_to_ids("<image_soft_token>")

    def ref(w: int, h: int) -> dict:
        out = proc(images=[image(w, h)], text=["<start_of_image>"], do_pan_and_scan=pan_and_scan)
        ids = list(out["input_ids"][0])
        return {"image_tokens": ids.count(soft)} if pan_and_scan else {"tokens": len(ids)}

    return ref


@cache
def paligemma() -> Ref:
    """paligemma-3b-pt-224: 224 px, image_seq_length 256; reference = ``<image>`` ids in the output."""
    ip = tf.SiglipImageProcessorPil(**FAST, size={"height": 224, "width": 224})
    ip.image_seq_length = 256  # preprocessor_config.json carries it; PaliGemmaProcessor reads the attribute
    tok = tokenizer(["<image>", "<bos>"], bos_token="<bos>")
    proc = tf.PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    image_id = tok.convert_tokens_to_ids("<image>")

    def ref(w: int, h: int) -> dict:
        return {"tokens": list(proc(images=[image(w, h)], text=["<image>"])["input_ids"][0]).count(image_id)}

    return ref


def pixtral_expansion(height: int, width: int, patch: int) -> str:
    """``PixtralProcessor.replace_image_token`` (transformers 5.x), retyped: its module imports torchvision."""
    rows = [["[IMG]"] * (width // patch) + ["[IMG_BREAK]"]] * (height // patch)
    flat = [t for row in rows for t in row]
    flat[-1] = "[IMG_END]"
    return "".join(flat)


@cache
def pixtral() -> Ref:
    """pixtral-12b: longest_edge 1024, patch 16, no merge (the image processor's ``image_sizes`` + the processor's
    expansion, retyped in ``pixtral_expansion``)."""
    ip = tf.PixtralImageProcessorPil(**FAST, size={"longest_edge": 1024}, patch_size={"height": 16, "width": 16})
    tok = tokenizer(["[IMG]", "[IMG_BREAK]", "[IMG_END]"])

    def ref(w: int, h: int) -> dict:
        height, width = ip(images=[image(w, h)])["image_sizes"][0]
        return {"tokens": len(tok(pixtral_expansion(int(height), int(width), 16))["input_ids"])}

    return ref


@cache
def fuyu() -> Ref:
    """fuyu-8b: 1080 x 1920 canvas, 30 px patches. ``FuyuProcessor.__call__`` fails with the PIL image processor
    (``patchify_image`` calls numpy's ``transpose`` with torch's signature), so this runs the image processor and
    the lines of ``FuyuProcessor._process_images`` that size the grid, then the real ``replace_image_token`` on a
    stand-in ``self``; the reference is its ``|SPEAKER|`` + ``|NEWLINE|`` count."""
    ip = tf.FuyuImageProcessorPil(**FAST)
    me = SimpleNamespace(image_token="|SPEAKER|", image_newline_token="|NEWLINE|")

    def ref(w: int, h: int) -> dict:
        out = ip(images=[image(w, h)])
        padded_h, padded_w = out["images"][0][0].shape[-2:]
        new_h = min(padded_h, math.ceil(out["image_unpadded_heights"][0][0] / 30) * 30)
        new_w = min(padded_w, math.ceil(out["image_unpadded_widths"][0][0] / 30) * 30)
        num_patches = ip.get_num_patches(image_height=new_h, image_width=new_w)
        text = tf.FuyuProcessor.replace_image_token(me, out, 0, num_patches=num_patches, row_width=new_w // 30)
        return {"tokens": text.count("|SPEAKER|") + text.count("|NEWLINE|")}

    return ref


@cache
def blip2() -> Ref:
    """blip2-opt-2.7b: num_query_tokens 32; reference = ``<image>`` ids in the output."""
    tok = tokenizer(["<image>"])
    proc = tf.Blip2Processor(image_processor=tf.BlipImageProcessorPil(**FAST), tokenizer=tok, num_query_tokens=32)
    image_id = tok.convert_tokens_to_ids("<image>")

    def ref(w: int, h: int) -> dict:
        return {"tokens": list(proc(images=[image(w, h)], text=["hello"])["input_ids"][0]).count(image_id)}

    return ref


@cache
def chameleon() -> Ref:
    """chameleon-7b: 512 px, 1024 VQ codes + <racm3:break> + <eoss>."""
    tok = tokenizer(["<image>", "<racm3:break>", "<eoss>"], sep_token="<eoss>")
    proc = tf.ChameleonProcessor(image_processor=tf.ChameleonImageProcessorPil(**FAST), tokenizer=tok)

    def ref(w: int, h: int) -> dict:  # text completion: no <eoss> separator appended after the prompt
        out = proc(images=[image(w, h)], text=["<image>"], return_for_text_completion=True)
        return {"tokens": len(out["input_ids"][0])}

    return ref


@cache
def internvl() -> Ref:
    """InternVL3-1B-hf: 448 px tiles, 1..12 patches (crop_to_patches forced on by the processor), 256 per view."""
    tok = tokenizer(["<img>", "</img>", "<IMG_CONTEXT>", "<video>"], start_image_token="<img>",
                    end_image_token="</img>", context_image_token="<IMG_CONTEXT>", video_token="<video>")
    ip = tf.GotOcr2ImageProcessorPil(**FAST, size={"height": 448, "width": 448}, min_patches=1, max_patches=12)
    proc = without_video(tf.InternVLProcessor)(image_processor=ip, tokenizer=tok, image_seq_length=256)
    return _length(proc, "<IMG_CONTEXT>")


REFERENCES: dict[str, Callable[[], Ref]] = {
    "llava-1.5": llava15, "llava-next": llava_next, "llava-onevision": llava_onevision,
    "qwen2-vl": lambda: qwen("Qwen2VLProcessor"), "qwen2.5-vl": lambda: qwen("Qwen2_5_VLProcessor"),
    "idefics2": idefics2, "idefics3": idefics3, "smolvlm": smolvlm, "llama-3.2-vision": mllama,
    "gemma3": gemma3, "paligemma": paligemma, "pixtral": pixtral, "fuyu": fuyu, "blip2": blip2,
    "chameleon": chameleon, "internvl": internvl,
}
