"""The curation chapter's table: precision and recall of every filter, and of the whole pipeline, against the
toy world's labelled raw footage (held-out seeds 1000..1049: 50 footages, 300 clips, 250 transitions).

    OMP_NUM_THREADS=1 .venv/bin/python bench/curation_groundtruth.py [--footages 50]

Each filter is scored on the true clips (so one filter's mistakes do not leak into another's figures); the
pipeline row runs everything end to end from the raw video (cut detection included, the toy CLIP scorer
and the oracle captioner) and counts a true clip as kept when a kept clip covers it within one frame.
A clip should be kept when its kind is "normal".
"""

from __future__ import annotations

import argparse
import time

from minivdm.curation.cuts import benchmark_footage_cuts
from minivdm.curation.motion import benchmark_footage_motion
from minivdm.curation.pipeline import curate_video, toy_world_config
from minivdm.curation.text_area import benchmark_footage_text
from minivdm.toy.clip import benchmark_footage_clip_scores, load_toy_clip_scorer
from minivdm.toyworld import caption_video
from minivdm.toyworld.footage import FOOTAGE_FPS, make_footage

FOOTAGE = dict(n_clips=6, clip_frames=16, size=32, fade_frames=4)  # noqa: C408


def pipeline_figures(seeds, scorer) -> dict:
    config = toy_world_config()
    true_positive = predicted = actual = 0
    failed_by_kind: dict[str, dict[str, int]] = {}
    for seed in seeds:
        footage = make_footage(seed, **FOOTAGE)
        records = curate_video(footage.video, FOOTAGE_FPS, scorer=scorer, captioner=caption_video, config=config)
        for clip in footage.clips:
            match = [r for r in records if abs(r.start - clip.start) <= 1 and abs(r.end - clip.end) <= 1]
            kept = bool(match) and match[0].keep
            should_keep = clip.kind == "normal"
            true_positive += kept and should_keep
            predicted += kept
            actual += should_keep
            reasons = failed_by_kind.setdefault(clip.kind, {})
            for reason in (match[0].failed if match else ["not found"]) or ["kept"]:
                reasons[reason] = reasons.get(reason, 0) + 1
    return {"precision": true_positive / max(predicted, 1), "recall": true_positive / max(actual, 1),
            "kept": predicted, "normal": actual, "verdicts_by_kind": failed_by_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footages", type=int, default=50)
    args = parser.parse_args()
    seeds = range(1000, 1000 + args.footages)
    scorer = load_toy_clip_scorer()
    start = time.perf_counter()
    cuts = benchmark_footage_cuts(seeds)
    motion = benchmark_footage_motion(seeds)
    text = benchmark_footage_text(seeds)
    clip = benchmark_footage_clip_scores(seeds, scorer=scorer)
    pipeline = pipeline_figures(seeds, scorer)
    rows = [
        ("cut detection (cuts + fades)", "transitions", cuts["precision"], cuts["recall"]),
        ("motion: static clips", "clips", motion["precision"], motion["recall"]),
        ("text area: text overlays", "clips", text["precision"], text["recall"]),
        ("CLIP aesthetic: low quality", "clips", clip["low_quality_precision"], clip["low_quality_recall"]),
        ("CLIP similarity: caption matches", "clip-caption pairs", clip["caption_match_precision"],
         clip["caption_match_recall"]),
        ("whole pipeline: clips kept = normal", "clips", pipeline["precision"], pipeline["recall"]),
    ]
    print(f"held-out footage seeds {seeds.start}..{seeds.stop - 1} ({args.footages} footages)")
    print(f"| {'filter':38s} | {'unit':18s} | precision | recall |")
    print(f"|{'-' * 40}|{'-' * 20}|-----------|--------|")
    for name, unit, precision, recall in rows:
        print(f"| {name:38s} | {unit:18s} | {precision:9.3f} | {recall:6.3f} |")
    print(f"clips recovered by cut detection: {cuts.get('clip_recovery')}")
    print(f"pipeline verdicts by true kind: {pipeline['verdicts_by_kind']}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
