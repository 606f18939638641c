"""The toy image-to-video model (chapter 12, SVD's conditioning at toy size) on held-out first frames.

    .venv/bin/python bench/toy_image_to_video.py [--model data/toy_image_to_video] [--clips 100] [--num-steps 20] \
        [--runs ramp no-guidance ...] [--out bench/results/toy_image_to_video.json]
    .venv/bin/python bench/toy_image_to_video.py --merge a.json b.json --out bench/results/toy_image_to_video.json

Each held-out first frame (of a moving object, from clips the model never saw) is asked for one of the speeds
0.5, 1, 1.5, 2 px/frame in turn. Per run: frame 0's mean absolute error against the given frame ([0, 1] units), one
object seen, identity kept (colour and shape), the oracle's consistency, Spearman's rank correlation between the
requested and the measured speed (a clip without one object counts as speed 0), the mean speed per request, the
directions taken. Runs (``--runs``; separate processes can run groups in parallel, then ``--merge``):

    ramp           SVD's guidance ramp, 1 on frame 0 to 3 on frame 7 (the default)
    no-guidance    guidance 1 on every frame (the conditional model alone)
    flat-3         guidance 3 on every frame
    noise-aug      the ramp, with the first frame augmented (s = 0.1) and the model told so
    speed-withheld the ramp, every clip told 1.25 px/frame: does the measured speed still follow the request?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

RUNS = {"ramp": {}, "no-guidance": {"max_guidance": 1.0}, "flat-3": {"min_guidance": 3.0},
        "noise-aug": {"noise_aug": 0.1}, "speed-withheld": {"given_speed": 1.25}}


def print_table(result: dict) -> None:
    from minivdm.toy.text_to_image import wilson_interval

    n = result["clips"]
    print(f"{n} held-out first frames, {result['num_steps']} DDIM steps (95% Wilson intervals on shares)")
    print("| run | frame-0 error (median) | one object | identity kept | consistent | speed rank correlation | "
          "mean speed at 0.5 / 1 / 1.5 / 2 | left / right / up / down / still / none |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in result["table"].items():
        shares = []
        for key in ("one_object", "identity", "consistent"):
            low, high = wilson_interval(round(row[key] * n), n)
            shares.append(f"{row[key]:.2f} ({low:.2f}-{high:.2f})")
        speeds = " / ".join(f"{value:.2f}" for value in row["mean_speed_by_request"].values())
        motions = " / ".join(f"{value:.2f}" for value in row["motion_distribution"].values())
        print(f"| {name} | {row['frame0_error_median']:.3f} | {' | '.join(shares)} | "
              f"{row['speed_rank_correlation']:.3f} | {speeds} | {motions} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="data/toy_image_to_video")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--num-steps", type=int, default=20, help="DDIM steps per clip")
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--merge", nargs="+", default=None, help="JSON files of earlier runs to combine")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    if args.merge:
        parts = [json.loads(Path(path).read_text()) for path in args.merge]
        result = {**parts[0], "table": {}, "per_clip": {}}
        for part in parts:
            result["table"].update(part["table"])
            result["per_clip"].update(part["per_clip"])
    else:
        from minivdm.toy.image_to_video import evaluate_toy_image_to_video, load_toy_image_to_video

        torch.manual_seed(0)
        model, metadata = load_toy_image_to_video(args.model)
        result = {"clips": args.clips, "num_steps": args.num_steps, "table": {}, "per_clip": {}, "sampling_seconds": {},
                  "training": {key: metadata[key] for key in ("steps", "train_seconds", "command", "losses")}}
        for name in args.runs:
            run = evaluate_toy_image_to_video(model, args.clips, num_steps=args.num_steps, **RUNS[name])
            result["table"][name] = run["model"]
            result["per_clip"][name] = {"requested": run["requested"], "speed": run["rows"]["speed"],
                                        "frame0_error": run["rows"]["frame0_error"]}
            result["sampling_seconds"][name] = run["sampling_seconds"]
            for reference in ("real clips", "copy the first frame"):
                result["table"][reference] = run[reference]
            print(f"{name}: {run['sampling_seconds']:.0f} s", flush=True)
    order = [*RUNS, "real clips", "copy the first frame"]
    result["table"] = {name: result["table"][name] for name in order if name in result["table"]}
    print_table(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")


if __name__ == "__main__":
    main()
