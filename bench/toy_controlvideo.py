"""ControlVideo on the toy world, measured by the oracle: per-frame ControlNet / first-frame attention / fully
cross-frame / + smoother (8-frame videos), and on 64 frames every frame in one call against the hierarchical
sampler.

    .venv/bin/python bench/toy_controlvideo.py [--videos 100] [--long-videos 20] [--out results.json]
    .venv/bin/python bench/toy_controlvideo.py --videos 4 --long-videos 0      # a quick look

Controls are the edge maps of held-out toy videos (``held_out_videos``, a seed no model was trained on); each
prompt gives the video's objects new colours (``recoloured``), so the colour can only come from the prompt and
the structure only from the control. The shipped toy ControlNet on the frozen toy text-to-image model; every row
uses the same videos, prompts and noise, so rows differ only by the mechanism. For each row:

* IoU: per (object, frame), the object drawn where the control put it (the colour the oracle reads most inside the
  control's mask: its pixels against the mask), mean and share >= 0.9; "IoU, prompted colour": the pixels in the
  object's prompted colour against its mask (structure and the colour bound to the right shape);
* frames right: single frames whose colours and shapes are the prompted ones;
* colour: the oracle's colour per prompted object (whole video); caption: colour, shape and motion all right;
* consistency: the oracle's temporal consistency (identity, size, colour and path stable); flicker: mean absolute
  change of background pixels between frames (RGB in [0, 1]).

95% Wilson intervals are printed for the rates over videos and objects.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def interval(rate: float, n: int) -> str:
    from minivdm.toy.text_to_image import wilson_interval

    low, high = wilson_interval(round(rate * n), n)
    return f"{rate:.3f} ({low:.2f}-{high:.2f})"


def measure(model, tokenizer, batch, settings, *, batch_size: int, seed: int) -> dict:
    from minivdm.toy.controlvideo import evaluate_toy_controlvideo

    start = time.perf_counter()
    row = evaluate_toy_controlvideo(model, tokenizer, batch, settings=settings, batch_size=batch_size, seed=seed)
    row["seconds"] = time.perf_counter() - start
    return row


def source_ceiling(batch) -> dict:
    """The oracle on the source videos themselves, against their own captions: what a perfect row would score (on
    64 frames objects slow down to stay in the frame, and the oracle reads few of their motions)."""
    from minivdm.toyworld.oracle import score_videos

    scores = score_videos(batch.video, list(batch.captions))
    return {key: scores[key] for key in ("caption_accuracy", "motion_accuracy", "temporal_consistency",
                                         "background_flicker")}


def print_table(title: str, rows: dict[str, dict], objects: int) -> None:
    print(f"\n{title}\n| row | IoU | IoU >= 0.9 | IoU, prompted colour | >= 0.9 | frames right | colour | caption | "
          f"consistency | flicker | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['mean_iou']:.3f} | {row['iou_at_least_0.9']:.3f} | {row['mean_iou_prompted_colour']:.3f} | "
              f"{row['iou_prompted_colour_at_least_0.9']:.3f} | {row['frames_right']:.3f} | "
              f"{interval(row['colour_accuracy'], objects)} | {interval(row['caption_accuracy'], row['videos'])} | "
              f"{interval(row['temporal_consistency'], objects)} | {row['background_flicker']:.4f} | "
              f"{row['seconds']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100, help="held-out 8-frame videos for the four short rows")
    parser.add_argument("--long-videos", type=int, default=20, help="held-out 64-frame videos (0: skip the long rows)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=10, help="videos per call (the same for every row: noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--controlnet", default=None, help="toy ControlNet folder (default: the shipped one)")
    parser.add_argument("--out", help="write every figure here as JSON")
    args = parser.parse_args()
    if args.videos < 1 or args.long_videos < 0 or args.batch_size < 1:
        parser.error("--videos and --batch-size must be >= 1, --long-videos >= 0")

    from minivdm.toy.controlnet import TOY_CONTROLNET_DIR, load_toy_controlnet
    from minivdm.toy.controlvideo import COMPARISON, LONG, held_out_videos

    torch.manual_seed(0)
    model, tokenizer = load_toy_controlnet(args.controlnet or TOY_CONTROLNET_DIR, device=args.device)
    results: dict = {"device": args.device, "batch_size": args.batch_size, "seed": args.seed}

    batch = held_out_videos(args.videos, 8)
    objects = sum(len(o) for o in batch.objects)
    first = next(iter(COMPARISON.values()))
    print(f"{args.videos} held-out 8-frame videos ({objects} objects), recoloured prompts, {first.num_steps} DDIM "
          f"steps, guidance {first.guidance_scale}, device {args.device}", flush=True)
    short = {}
    for name, settings in COMPARISON.items():
        short[name] = measure(model, tokenizer, batch, settings, batch_size=args.batch_size, seed=args.seed)
        print_table("8 frames (so far)", {name: short[name]}, objects)
    results["short"] = short
    results["short_source"] = source_ceiling(batch)
    print_table("8 frames", short, objects)
    print(f"the source videos, scored against their own captions: {results['short_source']}")

    if args.long_videos:
        long_batch = held_out_videos(args.long_videos, 64)
        long_objects = sum(len(o) for o in long_batch.objects)
        print(f"\n{args.long_videos} held-out 64-frame videos ({long_objects} objects)", flush=True)
        long = {}
        for name, settings in LONG.items():
            long[name] = measure(model, tokenizer, long_batch, settings, batch_size=max(1, args.batch_size // 4),
                                 seed=args.seed)
            print_table("64 frames (so far)", {name: long[name]}, long_objects)
        results["long"] = long
        results["long_source"] = source_ceiling(long_batch)
        print_table("64 frames", long, long_objects)
        print(f"the source videos, scored against their own captions: {results['long_source']}")

    if args.out:
        with open(args.out, "w") as file:
            json.dump(results, file, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
