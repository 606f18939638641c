"""Tune-A-Video on the toy world, measured by the oracle: the shipped toy text-to-image model inflated and tuned
on ONE held-out clip, then three edits of it (new colour; new shape; both), against its ablations.

    .venv/bin/python bench/toy_tune_a_video.py [--sources 20] [--out bench/results/toy_tune_a_video.json]
    .venv/bin/python bench/toy_tune_a_video.py --sources 20 --shard 0/2 --rows rows0.jsonl   # two processes
    .venv/bin/python bench/toy_tune_a_video.py --sources 2                                    # a quick look

Sources: single moving objects of held-out toy clips (``held_out_sources``, 8 frames). For each source the model
is tuned once with ST-attention (snapshots at 100, 300 and 500 steps of the same run) and once without
(plain per-frame self-attention, 500 steps); every row edits the same sources with the same captions:

* "Tune-A-Video (500 steps)": tuned, DDIM inversion of the source (empty prompt), guidance 3, 30 DDIM steps;
* "no DDIM inversion": the tuned model from fresh noise;
* "no ST-attention": tuned and edited with per-frame self-attention;
* "no tuning (0 steps)", "100 steps", "300 steps": the tuning sweep (0 = the inflated image model);
* "no tuning, no inversion": the inflated image model from fresh noise (what the tuned weights add, against the
  "no DDIM inversion" row).

Per edit: colour and shape as prompted ("edit followed": both), the direction of motion kept, the mean distance
of the edited object's path (each relative to its first frame) to the source's ("path within 2 px"), its
position error, one object seen, the oracle's temporal consistency. The source caption is edited too
("reconstruction"): how much of the clip inversion + the tuned model give back. Rows of finished sources are
appended to a JSON-lines file, so a killed run resumes where it stopped.

Each process measures its sources in order in one stream of torch's global generator (seeded 0 at the start), which
also draws the new temporal attention's initial weights at each inflation: the same command with the same
``--shard`` repeats every figure when it runs uninterrupted (a resumed run starts the stream again at its first
unfinished source); another split gives other initial weights, and figures within their noise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

ROWS = ("Tune-A-Video (500 steps)", "no DDIM inversion", "no ST-attention", "no tuning (0 steps)", "100 steps",
        "300 steps", "no tuning, no inversion")
UNTUNED_FROM_NOISE = "no tuning, no inversion"  # the inflated image model from fresh noise: what neither piece gives


def interval(rate: float, n: int) -> str:
    from minivdm.toy.text_to_image import wilson_interval

    low, high = wilson_interval(round(rate * n), n)
    return f"{rate:.3f} ({low:.2f}-{high:.2f})"


def row_runner(model, tokenizer, batch, index: int, out: dict):
    """``run(row, unet, settings)``: edit source ``index`` with ``unet`` (its caption, then its three edits), score
    the videos into ``out["rows"][row]``."""
    from minivdm.toy.tune_a_video import ToyEditSettings, caption, edit_captions, edit_toy, score_edits

    source, obj = batch.video[index:index + 1], batch.objects[index][0]
    edits = edit_captions(obj, seed=index)
    original = (obj.colour, obj.shape, obj.motion)
    captions = [caption(*original)] + [caption(*edit) for edit in edits]

    def run(row: str, unet, settings=ToyEditSettings()):
        start = time.perf_counter()
        videos = edit_toy(unet, model, tokenizer, source, captions, settings=settings, seed=index)
        out["rows"][row] = {"edits": score_edits(videos[1:], source, edits),
                            "reconstruction": score_edits(videos[:1], source, [original])}
        out["seconds"][row + " (edit)"] = time.perf_counter() - start

    return run


def measure_source(model, tokenizer, batch, index: int, learning_rate: float | None = None) -> dict:
    """Every row's scored edits (and reconstruction) of source ``index``; ``learning_rate`` overrides the recipe's."""
    from dataclasses import replace

    from minivdm.toy.tune_a_video import TOY_TUNING, TUNING_STEPS, ToyEditSettings, caption, edit_captions, tune_toy

    config = TOY_TUNING if learning_rate is None else replace(TOY_TUNING, learning_rate=learning_rate)

    source, source_caption = batch.video[index:index + 1], batch.captions[index]
    edits = edit_captions(batch.objects[index][0], seed=index)
    out = {"source": index, "caption": source_caption, "edits": [caption(*edit) for edit in edits], "rows": {},
           "seconds": {}, "learning_rate": config.learning_rate}
    run = row_runner(model, tokenizer, batch, index, out)

    with tempfile.TemporaryDirectory() as folder:
        for steps in TUNING_STEPS:
            start = time.perf_counter()
            unet = tune_toy(model, tokenizer, source, source_caption, steps=steps, checkpoint_dir=folder, config=config)
            out["seconds"][f"tune to {steps}"] = time.perf_counter() - start
            name = {0: "no tuning (0 steps)", 500: "Tune-A-Video (500 steps)"}.get(steps, f"{steps} steps")
            run(name, unet)
            if steps == 0:
                run(UNTUNED_FROM_NOISE, unet, ToyEditSettings(inversion=False))
            if steps == 500:
                run("no DDIM inversion", unet, ToyEditSettings(inversion=False))
    start = time.perf_counter()
    unet = tune_toy(model, tokenizer, source, source_caption, steps=500, sparse_causal=False, config=config)
    out["seconds"]["tune without ST-attention"] = time.perf_counter() - start
    run("no ST-attention", unet)
    return out


def complete_untuned_rows(model, tokenizer, batch, done: dict) -> list[int]:
    """Measure the row that needs no tuning on finished sources that lack it; the sources completed."""
    from minivdm.models.tune_a_video_unet import inflate_for_tune_a_video
    from minivdm.toy.tune_a_video import ToyEditSettings

    completed = []
    for index, result in sorted(done.items()):
        if UNTUNED_FROM_NOISE not in result["rows"]:
            run = row_runner(model, tokenizer, batch, index, result)
            run(UNTUNED_FROM_NOISE, inflate_for_tune_a_video(model.unet).eval(), ToyEditSettings(inversion=False))
            completed.append(index)
    return completed


def read_rows(path: str | Path) -> dict[int, dict]:
    """The finished sources of a JSON-lines file (empty when there is none yet), by source index."""
    path = Path(path)
    if not path.exists():
        return {}
    return {row["source"]: row for row in map(json.loads, path.read_text().splitlines()) if row}


def prepare_run(sources: int, shard: str, rows: str | None):
    """(model, tokenizer, held-out sources, this shard's source indices, rows file, finished sources): one process's
    share of the sources, torch's generator seeded first (see the module's docstring)."""
    from minivdm.toy.text_to_image import load_text_to_image
    from minivdm.toy.tune_a_video import held_out_sources

    torch.manual_seed(0)
    model, tokenizer = load_text_to_image()
    batch = held_out_sources(sources)
    index, count = (int(part) for part in shard.split("/"))
    rows_path = Path(rows or tempfile.mktemp(suffix=".jsonl"))
    return model, tokenizer, batch, list(range(index, sources, count)), rows_path, read_rows(rows_path)


def merge(results: list[dict]) -> dict:
    from minivdm.toy.tune_a_video import summarise

    table = {}
    for row in ROWS:
        for part in ("edits", "reconstruction"):
            merged: dict[str, list] = {}
            for result in results:
                for key, values in result["rows"][row][part].items():
                    merged.setdefault(key, []).extend(values)
            table.setdefault(row, {})[part] = summarise(merged)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--shard", default="0/1", help="i/n: this process measures sources i, i + n, ...")
    parser.add_argument("--rows", default=None, help="JSON-lines file of finished sources (resumed)")
    parser.add_argument("--merge", nargs="*", default=None, help="only merge these JSON-lines files into --out")
    parser.add_argument("--out", default=None)
    parser.add_argument("--learning-rate", type=float, default=None, help="override the tuning recipe's (3e-4)")
    args = parser.parse_args()

    results: list[dict] = []
    if args.merge is not None:
        for path in args.merge:
            results += list(read_rows(path).values())
    else:
        model, tokenizer, batch, indices, rows_path, done = prepare_run(args.sources, args.shard, args.rows)
        completed = complete_untuned_rows(model, tokenizer, batch, done)
        if completed:  # rows added to this benchmark after those sources were measured: the file is rewritten whole
            rows_path.write_text("".join(json.dumps(done[index]) + "\n" for index in sorted(done)))
            print(f"added {UNTUNED_FROM_NOISE!r} to sources {completed}", flush=True)
        for index in indices:
            if index not in done:
                done[index] = measure_source(model, tokenizer, batch, index, args.learning_rate)
                with open(rows_path, "a") as file:
                    file.write(json.dumps(done[index]) + "\n")
                print(f"source {index}: {done[index]['caption']} ({sum(done[index]['seconds'].values()):.0f} s)", flush=True)
        results = [done[i] for i in sorted(done)]

    results.sort(key=lambda result: result["source"])
    table = merge(results)
    edits = table[ROWS[0]]["edits"]["edits"]
    print(f"\n{len(results)} sources x 3 edits = {edits} edits per row (95% Wilson intervals)")
    print("| row | edit followed | colour | shape | direction kept | path within 2 px | median path error (px) | "
          "one object | consistent | reconstruction: right / path within 2 px |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in ROWS:
        e, r = table[row]["edits"], table[row]["reconstruction"]
        print(f"| {row} | {interval(e['edit_followed'], edits)} | {e['colour']:.3f} | {e['shape']:.3f} | "
              f"{interval(e['direction'], edits)} | {interval(e['path_within_2px'], edits)} | "
              f"{e['median_path_error_px']:.2f} | {e['one_object']:.3f} | {e['consistent']:.3f} | "
              f"{r['edit_followed']:.2f} / {r['path_within_2px']:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"sources": len(results), "table": table, "per_source": results},
                                             indent=1) + "\n")


if __name__ == "__main__":
    main()
