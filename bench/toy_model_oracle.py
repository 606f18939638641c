"""Oracle figures of the shipped toy models over held-out prompts (the numbers the issues' targets are about).

    OMP_NUM_THREADS=1 .venv/bin/python bench/toy_model_oracle.py text-to-image [--folder data/toy_text_to_image]
    OMP_NUM_THREADS=1 .venv/bin/python bench/toy_model_oracle.py vdm [--folder data/toy_vdm] [--prompts 100]

text-to-image: 500 prompts (generate_images 100 x seed 2024, 200 x seed 7, 200 x seed 99), guidance 3, 30 DDIM steps,
about 1 s per prompt on one thread. vdm: ``--prompts`` captions of generate(seed=2024, frames=8), guidance 3, 20 steps.
"""

from __future__ import annotations

import argparse
import time

import torch

TEXT_TO_IMAGE_SETS = ((100, 2024), (200, 7), (200, 99))
KEYS = ("caption_accuracy", "colour_accuracy", "shape_accuracy", "motion_accuracy", "temporal_consistency")


def text_to_image(folder: str | None) -> None:
    from minivdm.toy.text_to_image import TEXT_TO_IMAGE_DIR, evaluate_text_to_image, load_text_to_image
    from minivdm.toyworld import generate_images

    model, tokenizer = load_text_to_image(folder or TEXT_TO_IMAGE_DIR)
    pooled, total = {}, 0
    for count, seed in TEXT_TO_IMAGE_SETS:
        start = time.perf_counter()
        prompts = generate_images(count, seed=seed).captions
        scores = evaluate_text_to_image(model, tokenizer, prompts, guidance_scale=3.0, num_steps=30)
        # motion scores are NaN for images: left out
        shown = {key: round(float(scores[key]), 3) for key in KEYS if key in scores and scores[key] == scores[key]}
        print(f"{count} prompts, generate_images(seed={seed}): {shown} ({time.perf_counter() - start:.0f} s)", flush=True)
        for key, value in shown.items():
            pooled[key] = pooled.get(key, 0.0) + count * float(scores[key])
        total += count
    print(f"pooled over {total} prompts: {({key: round(value / total, 3) for key, value in pooled.items()})}")


def vdm(folder: str | None, prompts: int) -> None:
    from minivdm.toy.vdm import TOY_VDM_DIR, TOY_VDM_FRAMES, evaluate_toy_vdm, load_toy_vdm
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import ToyWorldConfig

    model, tokenizer = load_toy_vdm(folder or TOY_VDM_DIR)
    captions = generate(prompts, seed=2024, config=ToyWorldConfig(frames=TOY_VDM_FRAMES)).captions
    start = time.perf_counter()
    scores = evaluate_toy_vdm(model, tokenizer, captions, guidance_scale=3.0, num_steps=20)
    print(f"{prompts} prompts: {({key: round(float(value), 3) for key, value in scores.items()})} "
          f"({time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["text-to-image", "vdm"])
    parser.add_argument("--folder", default=None, help="model folder (default: the shipped one in data/)")
    parser.add_argument("--prompts", type=int, default=100, help="vdm: number of held-out prompts")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    if args.model == "text-to-image":
        text_to_image(args.folder)
    else:
        vdm(args.folder, args.prompts)


if __name__ == "__main__":
    main()
