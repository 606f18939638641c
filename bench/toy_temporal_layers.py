"""Temporal layers learned from unlabeled video on the toy world (chapter 9), measured by the oracle: Make-A-Video's
pseudo-3D layers and Video LDM's alpha-merged ones, each trained on the frozen toy image model with the same
recipe and CPU budget, against the untrained inflation (the image model on every frame) and the data.

    .venv/bin/python bench/toy_temporal_layers.py --make-a-video data/toy_make_a_video --video-ldm data/toy_video_ldm \
        [--prompts 100] [--num-steps 20] [--out bench/results/toy_temporal_layers.json]

One clip per held-out motion-free prompt ("a red circle"), 20 DDIM steps, guidance 3, the same noise for every
model. Per row: one object seen; colour and shape as prompted; temporal consistency (the oracle's: seen in every
frame, stable size, colour and shape, a straight path at constant speed); moving cleanly (consistent and not
still); the distribution of the motion read. The "data" row reads the held-out clips themselves.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def interval(rate: float, n: int) -> str:
    from minivdm.toy.text_to_image import wilson_interval

    low, high = wilson_interval(round(rate * n), n)
    return f"{rate:.3f} ({low:.2f}-{high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make-a-video", default="data/toy_make_a_video")
    parser.add_argument("--video-ldm", default="data/toy_video_ldm")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--num-steps", type=int, default=20, help="DDIM steps per clip")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from minivdm.toy.temporal_layers import (SamplingSettings, ToyTextToImage, evaluate_toy_temporal_layers, inflate,
                                             load_toy_temporal_layers)
    from minivdm.toy.text_to_image import load_text_to_image

    torch.manual_seed(0)
    image, tokenizer = load_text_to_image()
    models = {"untrained inflation (image model per frame)": ToyTextToImage(inflate(image.unet, "make-a-video"),
                                                                             image.text_encoder).eval()}
    metadata = {}
    for name, folder in (("Make-A-Video (pseudo-3D)", args.make_a_video), ("Video LDM (alpha merge)", args.video_ldm)):
        if folder and Path(folder).exists():
            models[name], _, metadata[name] = load_toy_temporal_layers(folder)
    results, data = {}, None
    for name, model in models.items():
        start = time.perf_counter()
        measured = evaluate_toy_temporal_layers(model, tokenizer, args.prompts,
                                                settings=SamplingSettings(num_steps=args.num_steps))
        results[name], data = measured["model"], measured["data"]
        results[name]["seconds"] = time.perf_counter() - start
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    results["data (held-out clips)"] = data
    if "Video LDM (alpha merge)" in models:
        results["Video LDM (alpha merge)"]["alphas"] = models["Video LDM (alpha merge)"].unet.alphas()
    n = args.prompts
    print(f"\n{n} held-out prompts, one clip each (95% Wilson intervals)")
    print("| model | one object | colour and shape kept | consistent | moving cleanly | left / right / up / down / still |")
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        motion = row["motion_distribution"]
        print(f"| {name} | {interval(row['one_object'], n)} | {interval(row['identity'], n)} | "
              f"{interval(row['consistent'], n)} | {interval(row['moving_cleanly'], n)} | "
              f"{' / '.join(f'{motion[m]:.2f}' for m in ('left', 'right', 'up', 'down', 'still'))} |")
    for name, meta in metadata.items():
        print(f"{name}: {meta['steps']} steps, {meta['train_seconds']} s; command: {meta['command']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"prompts": n, "num_steps": args.num_steps, "table": results,
                                              "training": {name: {key: meta[key] for key in ("steps", "train_seconds",
                                                                                              "command", "losses",
                                                                                              "log_every")}
                                                           for name, meta in metadata.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
