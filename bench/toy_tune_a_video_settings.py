"""The second attempt at Tune-A-Video's motion figure on the toy world: which edit settings keep the source's motion?

    .venv/bin/python bench/toy_tune_a_video_settings.py --sources 8 --shard 0/2 --rows a.jsonl   # measured: sources 0-5
    .venv/bin/python bench/toy_tune_a_video_settings.py --merge a.jsonl b.jsonl --out bench/results/toy_tune_a_video_settings.json

The main benchmark (bench/toy_tune_a_video.py) edits with the paper's recipe (DDIM inversion with the empty
caption, classifier-free guidance 3): the motion is kept in 0.58 of the edits. Here the same held-out sources and
edits are run with three models (the inflated image model untuned; tuned 500 steps at the toy recipe's 3e-4; at
the paper's 3e-5) x guidance scale 1.5 / 3 x the caption the source is inverted with (empty, as the paper; or the
source's own caption, so the inverted noise is the one the model maps back to the source under that caption).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

MODELS = ("untuned", "tuned 3e-4", "tuned 3e-5")
GUIDANCE = (1.5, 3.0)
INVERSION = ("empty caption", "source caption")


def measure_source(model, tokenizer, batch, index: int) -> dict:
    from minivdm.methods.tune_a_video import edit_video
    from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE
    from minivdm.toy.tune_a_video import TOY_TUNING, caption, edit_captions, embed, score_edits, tune_toy

    source, source_caption = batch.video[index:index + 1], batch.captions[index]
    obj = batch.objects[index][0]
    edits = edit_captions(obj, seed=index)
    text = embed(model, tokenizer, [caption(*edit) for edit in edits])
    null, source_text = embed(model, tokenizer, [""]), embed(model, tokenizer, [source_caption])
    times = TEXT_TO_IMAGE_SCHEDULE.uniform_times(30)
    out = {"source": index, "caption": source_caption, "rows": {}}
    for name in MODELS:
        steps = 0 if name == "untuned" else 500
        config = replace(TOY_TUNING, learning_rate=3e-5) if name == "tuned 3e-5" else TOY_TUNING
        unet = tune_toy(model, tokenizer, source, source_caption, steps=steps, config=config)
        for guidance in GUIDANCE:
            for inversion in INVERSION:
                videos = edit_video(unet, source, text, null, TEXT_TO_IMAGE_SCHEDULE, times, guidance_scale=guidance,
                                    prediction_type="v", integer_timesteps=False,
                                    inversion_text=source_text if inversion == "source caption" else None,
                                    progress=False).clamp(-1, 1)
                out["rows"][f"{name}, guidance {guidance}, inverted with the {inversion}"] = score_edits(videos, source, edits)
        print(f"  source {index}: {name} done", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--rows", default=None)
    parser.add_argument("--merge", nargs="*", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from minivdm.toy.tune_a_video import summarise

    from toy_tune_a_video import prepare_run, read_rows  # the main benchmark's (bench/ is this script's folder)

    if args.merge is not None:
        results = [row for path in args.merge for row in read_rows(path).values()]
    else:
        model, tokenizer, batch, indices, rows_path, done = prepare_run(args.sources, args.shard, args.rows)
        for index in indices:
            if index not in done:
                done[index] = measure_source(model, tokenizer, batch, index)
                with open(rows_path, "a") as file:
                    file.write(json.dumps(done[index]) + "\n")
        results = list(done.values())
    results.sort(key=lambda result: result["source"])
    table = {}
    for row in results[0]["rows"]:
        merged: dict[str, list] = {}
        for result in results:
            for key, values in result["rows"][row].items():
                merged.setdefault(key, []).extend(values)
        table[row] = summarise(merged)
    print(f"{len(results)} sources x 3 edits")
    print("| model, guidance, inversion | edit followed | direction kept | path within 2 px | median path error (px) | consistent |")
    print("|---|---|---|---|---|---|")
    for row, e in table.items():
        print(f"| {row} | {e['edit_followed']:.2f} | {e['direction']:.2f} | {e['path_within_2px']:.2f} | "
              f"{e['median_path_error_px']:.2f} | {e['consistent']:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"sources": len(results), "table": table, "per_source": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
