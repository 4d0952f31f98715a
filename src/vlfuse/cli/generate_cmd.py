"""``vlfuse generate --model DIR --image A.png [--image B.png] --prompt "..."``: stream an answer to stdout."""

from __future__ import annotations

import argparse
import sys

from vlfuse.cli.common import model_dir
from vlfuse.data.llava_format import load_image
from vlfuse.generate import check_sampling
from vlfuse.model import VLM


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="answer a prompt about images", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--image", action="append", default=[], help="an image file (repeat for several)")
    p.add_argument("--prompt", required=True,
                   help="the question; without <image> placeholders, one per image is put in front")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_sampling(args.max_new_tokens, args.temperature, args.top_p)  # before the model is loaded
    images = [load_image(path) for path in args.image]
    model = VLM.from_pretrained(model_dir(args.model))
    prompt = args.prompt
    token = model.config.tokenizer.image_token
    if images and token not in prompt:
        prompt = f"{token}\n" * len(images) + prompt

    def stream(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    model.generate(prompt, images, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   top_p=args.top_p, seed=args.seed, stream=stream)
    sys.stdout.write("\n")
    return 0
