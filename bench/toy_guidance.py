"""What classifier-free guidance changes on the toy text-to-image model, over many held-out prompts.

    OMP_NUM_THREADS=2 .venv/bin/python bench/toy_guidance.py [--prompts 300] [--steps 20]

For each guidance scale: caption accuracy (oracle: every prompted object's colour and shape) with its 95%
Wilson interval, and diversity (the spread, in pixels, of the object's centre over 8 samples of the same prompt,
averaged over 24 prompts).
Tutorial 2, section 3, quotes these figures next to its live, smaller measurement.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from minivdm.toy.text_to_image import guidance_sweep, load_text_to_image
    from minivdm.toyworld import generate_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0, 8.0])
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    model, tokenizer = load_text_to_image()
    prompts = generate_images(args.prompts, seed=2025).captions
    start = time.perf_counter()
    print("| w | caption accuracy | 95% interval | spread of the object's centre, px (8 draws x 24 prompts) |")
    print("|---|---|---|---|")
    for result in guidance_sweep(model, tokenizer, prompts, args.scales, diversity_prompts=24, num_steps=args.steps):
        low, high = result["interval"]
        print(f"| {result['guidance_scale']:g} | {result['caption_accuracy']:.3f} | {low:.3f}-{high:.3f} | "
              f"{result['diversity']:.2f} |", flush=True)
    print(f"{args.prompts} prompts, {args.steps} DDIM steps: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
