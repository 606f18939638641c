"""Gen-1 on the toy world (chapter 10), measured by the oracle: edits of held-out clips by a content image of
another colour (or its caption, through the prior), at each structure level t_s, with and without guidance,
against the model before training and the model trained with the paper's recipe alone (content always from the
clip's own frame, ``--own-frame-model``: a folder trained with ``train-toy-gen1 --content-swap 0``).

    .venv/bin/python bench/toy_gen1.py [--model data/toy_gen1] [--pairs 100] [--num-steps 10] \
        [--own-frame-model FOLDER] [--runs main,sweep,text,no-guidance,untrained,own-frame] [--out FILE.json]
    .venv/bin/python bench/toy_gen1.py --merge part1.json part2.json ... --out bench/results/toy_gen1.json

One edit per (source clip, content image) pair, the same noise for every setting. Per row: mean per-frame object
mask IoU with the source and the share of pairs with IoU >= 0.9; the source's motion read back; the source's
shape read back; the content image's colour read back (and the source's, which an edit should have replaced);
one object seen; temporal consistency (the oracle's). ``--runs`` picks groups so that two processes can share
the work (each writes its own --out; ``--merge`` joins them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from minivdm.io.atomic_files import write_text_atomically

RUN_GROUPS = ("main", "sweep", "text", "no-guidance", "untrained", "own-frame")
MAIN_ROW = "Gen-1, content image (t_s = 0, w = 3)"


def row_rank(name: str) -> tuple[int, str]:
    """Table order: the t_s sweep (t_s = 0 first), text edits, no guidance, the paper's recipe, before training."""
    for rank, start in enumerate(("Gen-1, content image", "Gen-1, content from the caption", "Gen-1 without guidance",
                                  "paper's recipe", "before training")):
        if name.startswith(start):
            return rank, name
    return 99, name


def interval(row: dict, key: str) -> str:
    low, high = row[key + "_interval"]
    return f"{row[key]:.2f} ({low:.2f}-{high:.2f})"


def print_table(results: dict, n: int) -> None:
    print(f"\n{n} held-out (source clip, content image of another colour) pairs, one edit each (95% Wilson intervals)")
    print("| edit | mean IoU | IoU >= 0.9 | motion kept | shape kept | target colour | source colour | consistent |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['mean_iou']:.3f} | {row['iou_at_least_0.9']:.2f} | {interval(row, 'motion_kept')} | "
              f"{interval(row, 'shape_kept')} | {interval(row, 'target_colour')} | {row['source_colour']:.2f} | "
              f"{interval(row, 'consistent')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="data/toy_gen1")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--num-steps", type=int, default=10, help="DDIM steps per edit")
    parser.add_argument("--levels", default=None, help="sweep: comma-separated t_s levels (default 1..4)")
    parser.add_argument("--own-frame-model", default=None, help="a folder trained with --content-swap 0")
    parser.add_argument("--runs", default=",".join(RUN_GROUPS), help=f"comma-separated groups of {RUN_GROUPS}")
    parser.add_argument("--merge", nargs="+", default=None, help="join the tables of these result files")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(Path(path).read_text()) for path in args.merge]
        if len({(part["pairs"], part["num_steps"]) for part in parts}) != 1 or len(
                {part["training"]["command"] for part in parts if "training" in part}) > 1:
            parser.error("--merge: the files measure different pairs, steps or models")
        merged = {}
        for part in parts:  # every part's figures, and what each says about the models it measured
            merged.update({**part, "table": {**merged.get("table", {}), **part["table"]}})
        merged["table"] = dict(sorted(merged["table"].items(), key=lambda item: row_rank(item[0])))
        print_table(merged["table"], merged["pairs"])
        if args.out:
            write_text_atomically(Path(args.out), json.dumps(merged, indent=1) + "\n")
        return
    groups = args.runs.split(",")
    if unknown := set(groups) - set(RUN_GROUPS):
        parser.error(f"--runs: unknown groups {sorted(unknown)}, choose from {RUN_GROUPS}")

    from minivdm.toy.gen1 import MAX_STRUCTURE_LEVEL, EditSettings, build_toy_gen1, edit_pairs, evaluate_edits, load_toy_gen1

    model, prior, metadata = load_toy_gen1(args.model) if set(groups) & {"main", "sweep", "text", "no-guidance"} else (
        None, None, None)
    pairs = edit_pairs(args.pairs)
    settings = {}  # row name -> (model, EditSettings, prior or None)
    if "main" in groups:
        settings[MAIN_ROW] = (model, EditSettings(0, 3.0, args.num_steps), None)
    if "sweep" in groups:
        levels = range(1, MAX_STRUCTURE_LEVEL + 1) if args.levels is None else [int(x) for x in args.levels.split(",")]
        for level in levels:
            settings[f"Gen-1, content image (t_s = {level}, w = 3)"] = (model, EditSettings(level, 3.0, args.num_steps),
                                                                        None)
    if "text" in groups:
        settings["Gen-1, content from the caption via the prior (t_s = 0, w = 3)"] = (
            model, EditSettings(0, 3.0, args.num_steps), prior)
    if "no-guidance" in groups:
        settings["Gen-1 without guidance (t_s = 0, w = 1)"] = (model, EditSettings(0, 1.0, args.num_steps), None)
    if "untrained" in groups:
        torch.manual_seed(0)
        settings["before training (t_s = 0, w = 3)"] = (build_toy_gen1().eval(), EditSettings(0, 3.0, args.num_steps),
                                                        None)
    if "own-frame" in groups:
        if args.own_frame_model is None:
            parser.error("--runs own-frame needs --own-frame-model (a folder trained with --content-swap 0)")
        own, _, own_metadata = load_toy_gen1(args.own_frame_model)
        settings["paper's recipe: content always from the clip's own frame (t_s = 0, w = 3)"] = (
            own, EditSettings(0, 3.0, args.num_steps), None)
    results = {}
    for name, (row_model, row_settings, row_prior) in settings.items():
        start = time.perf_counter()
        results[name] = evaluate_edits(row_model, pairs, settings=row_settings, prior=row_prior)["summary"]
        results[name]["settings"] = row_settings.__dict__
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    print_table(results, args.pairs)
    keys = ("steps", "train_seconds", "command", "losses", "log_every", "content_swap")
    measured = {"pairs": args.pairs, "num_steps": args.num_steps, "table": results}
    if metadata is not None:
        print(f"model: {metadata['steps']} steps, {metadata['train_seconds']} s; command: {metadata['command']}")
        measured["training"] = {key: metadata.get(key, "") for key in keys}
    if "own-frame" in groups:
        measured["own_frame_training"] = {key: own_metadata.get(key, "0 (the paper's recipe)") for key in keys}
    if args.out:
        write_text_atomically(Path(args.out), json.dumps(measured, indent=1) + "\n")


if __name__ == "__main__":
    main()
