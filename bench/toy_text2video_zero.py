"""Text2Video-Zero on the toy world, measured by the oracle: the ablation table and the lambda / Delta t / T sweeps.

    .venv/bin/python bench/toy_text2video_zero.py [--prompts 100] [--device cuda] [--out results.json]
    .venv/bin/python bench/toy_text2video_zero.py --prompts 4 --rows both --no-sweeps     # a quick look

The shipped toy text-to-image model (never trained on video) makes one 8-frame video per (held-out image
caption, direction): captions of ``generate_images(prompts, seed=2024)`` (the first set the image model itself
is measured on), each with the four directions. Every row uses the same captions and the same noise (x_T^1 and
the frames' noise come from the same seeds), so rows differ only by the mechanism. For each row:

* caption: colour, shape and motion of every object as in "<caption> moving <direction>" (one video);
* frames right: the share of single frames whose colour and shape match the image caption (per frame);
* motion: the oracle's motion direction of each object equals delta;
* consistency: the oracle's temporal consistency (identity, size, colour and path stable over the frames), and of
  the inconsistent objects the share that touch the frame's edge in some frame or are missing from one.

The image model's own caption accuracy is measured on the same captions, same sampler steps and guidance, with
one image per caption (the first of the four directions' seeds): the chapter's target is the "both" row's
per-frame accuracy within 3 points of it. 95% Wilson intervals are printed for the rates.
On 2 CPU cores a 400-video row at 25 steps takes about 36 minutes; on a GPU, seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import torch

ROWS_HELP = "ablation rows to run (names from minivdm.toy.text2video_zero.ABLATION, or 'all')"
# sweeps around the "both" row: (settings field, values, table title)
SWEEPS = (("strength", (0.5, 0.75, 1.0, 1.5, 2.0), "lambda sweep (both; pixels per frame)"),
          ("delta_t", (1, 3, 5, 8), "Delta t sweep (both; DDIM steps from T to T')"),
          ("start_index", (2, 4, 6, 8, 10, 12, 14), "T sweep (both; x_T^1 taken after this many of the 25 steps)"))


def per_frame_accuracy(videos: torch.Tensor, image_captions: list[str]) -> float:
    """The share of frames whose objects' colour and shape match the image caption (motion not judged)."""
    from minivdm.toyworld.oracle import score_videos

    frames = videos.shape[2]
    single = videos.permute(0, 2, 1, 3, 4).reshape(-1, videos.shape[1], 1, *videos.shape[-2:])
    return score_videos(single, [c for c in image_captions for _ in range(frames)])["caption_accuracy"]


def inconsistency_reasons(videos: torch.Tensor) -> dict[str, float]:
    """Why the oracle calls objects inconsistent: of the inconsistent objects, the share that touch the frame's
    edge in some frame (cut by it or leaving it) and the share missing from some frame; and the consistency of
    the objects that never touch the edge (the same objects' rate without the edge)."""
    from minivdm.toyworld.oracle import COLOURS, label_pixels, read_video

    labels = label_pixels((videos.float().clamp(-1, 1) + 1) / 2)  # (B, T, H, W)
    border = torch.ones(labels.shape[-2:], dtype=torch.bool)
    border[1:-1, 1:-1] = False
    inconsistent = touching = missing = inside = inside_consistent = 0
    for b, objects in enumerate(read_video(videos)):
        for obj in objects:
            touches = bool(((labels[b] == COLOURS.index(obj.colour)) & border).any())
            inside += not touches
            inside_consistent += obj.consistent and not touches
            if not obj.consistent:
                inconsistent += 1
                touching += touches
                missing += bool(torch.isnan(obj.trajectory).any())
    return {"inconsistent_objects": inconsistent, "share_touching_the_edge": touching / max(inconsistent, 1),
            "share_missing_from_a_frame": missing / max(inconsistent, 1), "objects_never_at_the_edge": inside,
            "consistency_never_at_the_edge": inside_consistent / max(inside, 1)}


def measure_row(model, tokenizer, captions: list[str], settings, *, batch_size: int, seed: int) -> dict:
    from minivdm.toy.text2video_zero import TOY_DIRECTIONS, toy_text2video_zero, video_caption
    from minivdm.toyworld.oracle import score_videos

    pairs = [(caption, direction) for caption in captions for direction in TOY_DIRECTIONS]
    started = time.perf_counter()
    videos = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        videos.append(toy_text2video_zero(model, tokenizer, [c for c, _ in chunk], [d for _, d in chunk],
                                          settings=settings, seed=seed + start).cpu())
    videos = torch.cat(videos)
    seconds = time.perf_counter() - started
    scores = score_videos(videos, [video_caption(c, d) for c, d in pairs])
    row = {key: scores[key] for key in ("caption_accuracy", "colour_accuracy", "shape_accuracy", "motion_accuracy",
                                        "temporal_consistency", "background_flicker")}
    row["frames_right"] = per_frame_accuracy(videos, [c for c, _ in pairs])
    row["why_inconsistent"] = inconsistency_reasons(videos)
    row.update(videos=len(pairs), seconds=round(seconds, 1), settings=asdict(settings))
    return row


def image_model_accuracy(model, tokenizer, captions: list[str], settings, *, batch_size: int, seed: int) -> dict:
    """The image model alone on the same captions (one image each), the same steps and guidance."""
    from minivdm.toy.text_to_image import sample_toy_images
    from minivdm.toyworld.oracle import score_videos

    images = torch.cat([sample_toy_images(model, tokenizer, captions[i:i + batch_size], num_steps=settings.num_steps,
                                          guidance_scale=settings.guidance_scale, seed=seed + i).cpu()
                        for i in range(0, len(captions), batch_size)])
    scores = score_videos(images[:, :, None], captions)
    return {"caption_accuracy": scores["caption_accuracy"], "images": len(captions)}


def interval(rate: float, n: int) -> str:
    from minivdm.toy.text_to_image import wilson_interval

    low, high = wilson_interval(round(rate * n), n)
    return f"{rate:.3f} ({low:.2f}-{high:.2f})"


def print_table(title: str, rows: dict[str, dict], objects: dict[str, int]) -> None:
    print(f"\n{title}\n| row | caption | frames right | motion | consistency | colour | shape | flicker | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        n, m = row["videos"], objects[name]
        print(f"| {name} | {interval(row['caption_accuracy'], n)} | {row['frames_right']:.3f} | "
              f"{interval(row['motion_accuracy'], m)} | {row['temporal_consistency']:.3f} | {row['colour_accuracy']:.3f} | "
              f"{row['shape_accuracy']:.3f} | {row['background_flicker']:.4f} | {row['seconds']:.0f} |", flush=True)
    print("inconsistent objects: " + "; ".join(
        f"{name} {row['why_inconsistent']['inconsistent_objects']}, {row['why_inconsistent']['share_touching_the_edge']:.2f} "
        f"touch the edge, {row['why_inconsistent']['share_missing_from_a_frame']:.2f} missing from a frame (consistency "
        f"of the {row['why_inconsistent']['objects_never_at_the_edge']} never at the edge: "
        f"{row['why_inconsistent']['consistency_never_at_the_edge']:.3f})"
        for name, row in rows.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100, help="held-out image captions (x 4 directions)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="videos per call (the same for every row: noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", nargs="+", default=["all"], help=ROWS_HELP)
    parser.add_argument("--no-sweeps", action="store_true", help="skip the lambda, Delta t and T sweeps")
    parser.add_argument("--out", help="write every figure here as JSON")
    args = parser.parse_args()

    from minivdm.toy.text2video_zero import ABLATION, ToyT2VZSettings
    from minivdm.toy.text_to_image import load_text_to_image
    from minivdm.toyworld import generate_images

    unknown = [name for name in args.rows if name != "all" and name not in ABLATION]
    if unknown:
        parser.error(f"unknown rows {unknown}; the rows are {list(ABLATION)} or 'all'")
    if args.prompts < 1 or args.batch_size < 1:
        parser.error("--prompts and --batch-size must be >= 1")
    torch.manual_seed(0)
    model, tokenizer = load_text_to_image(device=args.device)
    captions = list(generate_images(args.prompts, seed=2024).captions)
    objects_per_caption = [len(c.split(" and ")) for c in captions]
    objects = 4 * sum(objects_per_caption)  # objects judged per row (every direction)
    base = ToyT2VZSettings()
    print(f"{len(captions)} held-out captions x 4 directions = {4 * len(captions)} videos per row, {base.num_frames} "
          f"frames, {base.num_steps} DDIM steps, guidance {base.guidance_scale}, device {args.device}", flush=True)
    results: dict = {"prompts": len(captions), "device": args.device, "batch_size": args.batch_size, "seed": args.seed}

    results["image_model"] = image_model_accuracy(model, tokenizer, captions, base, batch_size=args.batch_size,
                                                  seed=args.seed)
    print(f"image model alone, same captions: caption accuracy "
          f"{interval(results['image_model']['caption_accuracy'], len(captions))}", flush=True)

    names = list(ABLATION) if "all" in args.rows else args.rows
    ablation = {name: measure_row(model, tokenizer, captions, ABLATION[name], batch_size=args.batch_size,
                                  seed=args.seed) for name in names}
    results["ablation"] = ablation
    print_table("ablation", ablation, dict.fromkeys(ablation, objects))

    if not args.no_sweeps:
        both = ABLATION["both"]
        for field, values, title in SWEEPS:
            rows = {f"{field} = {value}": measure_row(model, tokenizer, captions, replace(both, **{field: value}),
                                                      batch_size=args.batch_size, seed=args.seed) for value in values}
            results[f"{field}_sweep"] = rows
            print_table(title, rows, dict.fromkeys(rows, objects))

    if args.out:
        with open(args.out, "w") as file:
            json.dump(results, file, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
