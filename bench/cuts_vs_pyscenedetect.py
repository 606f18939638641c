"""Our cascaded cut/fade detector against PySceneDetect's ContentDetector, on the held-out toy footage.

Every held-out footage (seeds 1000..1049, ``make_footage(seed, n_clips=6, clip_frames=16, size=32,
fade_frames=4)``) is written to an .mp4 at FOOTAGE_FPS, upscaled 4x with nearest neighbour (H.264 stores
colour at half resolution). PySceneDetect reads the file; ours reads the frames back from the same file
with ``minivdm.io.video_files.read_video``, so both see the same compressed video. PySceneDetect's
threshold and minimum scene length are tuned on the tuning seeds (0..TUNING_FOOTAGES-1) only, like ours.

PySceneDetect reports scene starts (cuts) only, so it is scored on "any transition": a fade found as a
cut is found ("kind acc" is the share of found transitions reported with the right kind). Agreement is
the F1 of PySceneDetect's cuts against ours (ours taken as the reference).

    pip install scenedetect opencv-python-headless     # benchmark-only dependencies
    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/cuts_vs_pyscenedetect.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from minivdm.curation.cuts import Transition, clips_between, detect_transitions, transition_precision_recall
from minivdm.io.video_files import read_video, write_video
from minivdm.toyworld.footage import FOOTAGE_FPS, make_footage

HELD_OUT = range(1000, 1050)
TUNING_FOOTAGES = 40
THRESHOLDS = (5.0, 8.0, 12.0, 18.0, 27.0)   # 27 is ContentDetector's default
MIN_SCENE_LENGTHS = (15, 4)                  # frames; 15 is the default (our clips are 16 frames)
SCALE = 4


def pyscenedetect_cuts(path: Path, threshold: float = 27.0, min_scene_len: int = 15) -> list[Transition]:
    from scenedetect import ContentDetector, detect

    scenes = detect(str(path), ContentDetector(threshold=threshold, min_scene_len=min_scene_len))
    # Each scene after the first starts on the first frame of a new shot: our cut convention.
    return [Transition(start.frame_num, "cut", 0) for start, _ in scenes[1:]]


def write_footages(seeds, folder: Path) -> list[tuple[int, Path, list]]:
    written = []
    for seed in seeds:
        footage = make_footage(seed, n_clips=6, clip_frames=16, size=32, fade_frames=4)
        path = write_video(folder / f"footage_{seed}.mp4", footage.video, fps=FOOTAGE_FPS, scale=SCALE)
        written.append((seed, path, footage))
    return written


def pooled(rows: list[tuple[list[Transition], list]]) -> dict:
    """Figures pooled over footages: sums the counts of transition_precision_recall."""
    keys = ("predicted", "true", "matched", "matched_same_kind")
    total = {key: 0 for key in keys}
    by_kind = {kind: {"true": 0, "matched": 0} for kind in ("cut", "fade")}
    for predicted, truth in rows:
        figures = transition_precision_recall(predicted, truth)
        for key in keys:
            total[key] += figures[key]
        for kind in by_kind:
            subset = [t for t in truth if (t.kind if isinstance(t, Transition) else t[1]) == kind]
            part = transition_precision_recall(predicted, subset)
            by_kind[kind]["true"] += part["true"]
            by_kind[kind]["matched"] += part["matched"]
    precision = total["matched"] / total["predicted"] if total["predicted"] else 1.0
    recall = total["matched"] / total["true"] if total["true"] else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "cuts_found": by_kind["cut"]["matched"] / max(by_kind["cut"]["true"], 1),
            "fades_found": by_kind["fade"]["matched"] / max(by_kind["fade"]["true"], 1),
            "kind_accuracy": total["matched_same_kind"] / max(total["matched"], 1),
            "predicted": total["predicted"], "true": total["true"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footages", type=int, default=len(HELD_OUT), help="held-out footages to use (<= 50)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        # Tune PySceneDetect's threshold (and minimum scene length) on the tuning seeds, by F1 on any transition.
        tuning = write_footages(range(TUNING_FOOTAGES), folder)
        tuning_f1 = {(threshold, length): pooled([(pyscenedetect_cuts(path, threshold, length), footage.transitions)
                                                  for _, path, footage in tuning])["f1"]
                     for threshold in THRESHOLDS for length in MIN_SCENE_LENGTHS}
        tuned, tuned_length = max(tuning_f1, key=tuning_f1.get)
        print(f"PySceneDetect tuning, F1 on tuning seeds 0..{TUNING_FOOTAGES - 1} (threshold, min_scene_len): "
              + ", ".join(f"({t:g}, {n}): {f:.3f}" for (t, n), f in tuning_f1.items()))

        held_out = write_footages(list(HELD_OUT)[: args.footages], folder)
        tuned_name = f"threshold {tuned:g}, min_scene_len {tuned_length}"
        results = {name: [] for name in ("ours (tensor)", "ours (mp4)", "PySceneDetect default (27, 15)",
                                         f"PySceneDetect tuned ({tuned:g}, {tuned_length})")}
        agreement = {"default": [], tuned_name: []}
        clips_recovered = clips_total = 0
        for seed, path, footage in held_out:
            ours_tensor = detect_transitions(footage.video, FOOTAGE_FPS)
            video = read_video(path)
            ours_file = detect_transitions(video, FOOTAGE_FPS)
            default = pyscenedetect_cuts(path)
            best = pyscenedetect_cuts(path, tuned, tuned_length)
            for name, predicted in zip(results, (ours_tensor, ours_file, default, best)):
                results[name].append((predicted, footage.transitions))
            agreement["default"].append((default, ours_file))
            agreement[tuned_name].append((best, ours_file))
            found = clips_between(video.shape[1], ours_file)
            clips_recovered += sum(any(abs(clip.start - s) <= 1 and abs(clip.end - e) <= 1 for s, e in found)
                                   for clip in footage.clips)
            clips_total += len(footage.clips)

    print(f"\nheld-out seeds {HELD_OUT.start}..{HELD_OUT.start + len(held_out) - 1}: {len(held_out)} footages, "
          f"written as .mp4 at {FOOTAGE_FPS} fps, {SCALE}x upscaled (H.264, crf 18); tolerance 1 frame")
    header = (f"{'detector':36s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'cuts found':>10s} "
              f"{'fades found':>11s} {'kind acc':>8s} {'predicted':>9s} {'true':>5s}")
    print(header)
    print("-" * len(header))
    for name, rows in results.items():
        figures = pooled(rows)
        print(f"{name:36s} {figures['precision']:9.3f} {figures['recall']:7.3f} {figures['f1']:6.3f} "
              f"{figures['cuts_found']:10.3f} {figures['fades_found']:11.3f} {figures['kind_accuracy']:8.3f} "
              f"{figures['predicted']:9d} {figures['true']:5d}")
    print("\nagreement with ours (mp4), F1 of PySceneDetect's cuts against our transitions:")
    for name, rows in agreement.items():
        print(f"  PySceneDetect {name}: F1 {pooled(rows)['f1']:.3f}")
    print(f"\nours (mp4): true clips recovered with start and end within 1 frame: "
          f"{clips_recovered}/{clips_total} = {clips_recovered / clips_total:.3f}")
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
