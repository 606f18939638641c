"""Make-A-Video's frame interpolation on the toy world (chapter 9): 4 key frames (0, 5, 10, 15) of held-out 16-frame
clips in, the 12 frames between them out; against blending the key frames' pixels.

    .venv/bin/python bench/toy_frame_interpolation.py [--model data/toy_frame_interpolation] [--clips 100] \
        [--num-steps 20] [--out bench/results/toy_frame_interpolation.json]

Per method: the median distance (px) between the object's centroid and the real clip's on the 12 generated frames,
the share of clips within 1 px on average, temporal consistency (the oracle's), one object seen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="data/toy_frame_interpolation")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--num-steps", type=int, default=20, help="DDIM steps per clip")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from minivdm.toy.frame_interpolation import evaluate_interpolation, load_toy_frame_interpolation
    from minivdm.toy.text_to_image import wilson_interval

    torch.manual_seed(0)
    model, tokenizer, metadata = load_toy_frame_interpolation(args.model)
    result = evaluate_interpolation(model, tokenizer, args.clips, num_steps=args.num_steps)
    n = result["clips"]
    print(f"{n} held-out clips, 12 generated frames each (95% Wilson intervals)")
    print("| method | median position error (px) | within 1 px | consistent | one object |")
    print("|---|---|---|---|---|")
    for name, row in result["table"].items():
        low, high = wilson_interval(round(row["within_1px"] * n), n)
        print(f"| {name} | {row['median_position_error_px']:.2f} | {row['within_1px']:.3f} ({low:.2f}-{high:.2f}) | "
              f"{row['consistent']:.3f} | {row['one_object']:.3f} |")
    print(f"trained {metadata['steps']} steps, {metadata['train_seconds']} s; command: {metadata['command']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"clips": n, "num_steps": args.num_steps, "table": result["table"],
                                              "training": {key: metadata[key] for key in ("steps", "train_seconds",
                                                                                          "command", "losses")}},
                                             indent=1) + "\n")


if __name__ == "__main__":
    main()
