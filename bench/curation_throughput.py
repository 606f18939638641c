"""Throughput of `minivdm curate` on this machine: clips and frames per second over a folder of toy footage.

    OMP_NUM_THREADS=2 .venv/bin/python bench/curation_throughput.py [--files 20] [--size 64] [--clip-scorer]

Writes ``--files`` toy-footage .mp4 files (6 clips of 16 frames each, joined by cuts and fades) to a
temporary folder, curates it twice (the second run finds everything done and must be near-instant),
and prints the figures. ``--size`` sets the frame size (frames above 128 px are analysed downscaled).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from minivdm.curation.folder_run import curate_folder
from minivdm.curation.pipeline import CurationConfig, toy_world_config
from minivdm.io.video_files import write_video
from minivdm.toyworld import caption_video
from minivdm.toyworld.footage import FOOTAGE_FPS, make_footage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--clip-scorer", action="store_true", help="also run the toy CLIP (aesthetic, caption)")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        frames = 0
        for index in range(args.files):
            footage = make_footage(2000 + index, n_clips=6, size=args.size)
            write_video(folder / "in" / f"{index:04d}.mp4", footage.video, fps=FOOTAGE_FPS)
            frames += footage.video.shape[1]
        options = {"config": CurationConfig()}
        if args.clip_scorer:
            from minivdm.toy.clip import load_toy_clip_scorer

            options = {"config": toy_world_config(), "scorer": load_toy_clip_scorer(), "captioner": caption_video}
        start = time.perf_counter()
        counts = curate_folder(folder / "in", folder / "out.jsonl", progress=False, **options)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        again = curate_folder(folder / "in", folder / "out.jsonl", progress=False, **options)
        resume_seconds = time.perf_counter() - start
    print(f"{args.files} files, {frames} frames of {args.size}x{args.size}, {counts['clips']} clips "
          f"({counts['kept']} kept){' with the toy CLIP' if args.clip_scorer else ''}")
    print(f"{seconds:.1f} s: {counts['clips'] / seconds:.2f} clips/s, {frames / seconds:.1f} frames/s")
    print(f"rerun over the finished output: {resume_seconds:.2f} s ({again['skipped']} files skipped)")


if __name__ == "__main__":
    main()
