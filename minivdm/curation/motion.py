"""The motion filter of Stable Video Diffusion: mean optical-flow magnitude at 2 fps, static clips dropped.

Stable Video Diffusion (Blattmann et al. 2023, arXiv:2311.15127, Sec. 3.1 and App. C) computes dense
optical flow at 2 fps over every clip and averages its magnitude into one motion score; clips whose
score is below a threshold are (nearly) static and are filtered out, because a video model trained
on them learns to generate still images.

For a clip sampled at ``sample_fps`` into frames x_0, ..., x_{T-1} of width W, with w_t the flow
from x_t to x_{t+1} (``optical_flow``, pixels per sampled step),

    score = mean over t, y, x of |w_t(y, x)|  *  sample_fps / W,

in **frame widths per second**: 0.1 means that, on average over the frame, content travels a tenth
of the frame width per second. Dividing by W makes the score independent of the resolution the flow
is computed at, and multiplying by sample_fps makes it a speed.

What the score sees: Horn–Schunck fills flat regions with the flow of their edges, so in the toy
world (flat shapes on a faint background) a moving object's flow spreads over much of the frame and
the score is closer to "how fast the moving things move" than to an area-weighted average. Pixel
noise does not look like motion: the Gaussian pre-blur and the pyramid average it, and the flow it
leaves has no common direction, so the smoothness term pulls it towards zero (tests: sigma = 0.05
noise on a static clip scores far below a 1 px/frame motion, although its frame difference is larger).

Threshold (STATIC_MOTION_THRESHOLD) tuned on the tuning seeds 0..199 with ``tune_static_threshold``:
the geometric mean of the largest score of a static clip under i.i.d. sensor noise (sigma 0.05, in
[-1, 1] units, drawn independently per frame) and the smallest score of a non-static clip.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from minivdm.curation.optical_flow import optical_flow
from minivdm.toyworld.footage import FOOTAGE_FPS, KINDS, make_footage
from minivdm.validation import check_tensor

MOTION_SAMPLE_FPS = 2.0
# Frame widths per second, from `python -c "from minivdm.curation.motion import tune_static_threshold;
# print(tune_static_threshold())"` on the 1200 clips of tuning seeds 0..199: static clips under sigma-0.05
# noise score at most 0.0114, non-static clips at least 0.0276 (a small triangle moving beside the text
# bar); their geometric mean is 0.0177. At 32 px and 2 fps that is a mean flow of 0.28 px per sample.
STATIC_MOTION_THRESHOLD = 0.0177
STATIC_NOISE_SIGMA = 0.05           # the sensor noise a static clip must survive when the threshold is tuned
TUNING_SEEDS = range(0, 200)
HELD_OUT_SEEDS = range(1000, 1050)
# The benchmark footage every curation helper uses, so that figures are comparable.
FOOTAGE_KWARGS = dict(n_clips=6, clip_frames=16, size=32, fade_frames=4)

CLIP_LAYOUT = "(C, T, H, W) with C = 3 (RGB) or 1 (grey) and T >= 2"


def _check_number(value, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def sample_frame_indices(start: int, end: int, fps: float, sample_fps: float = MOTION_SAMPLE_FPS) -> list[int]:
    """The frames of [start, end), recorded at ``fps``, that make the clip play at ``sample_fps``.

    Frame k of the sampled clip is the source frame nearest to time k / sample_fps after ``start``
    (every fps / sample_fps frames: 8 fps -> 2 fps keeps start, start + 4, start + 8, ...). When the
    source is not faster than sample_fps every frame is kept. A clip of two or more frames shorter
    than one sampling period keeps its first and last frame, so that it still has one flow field
    (its frames are then closer in time than 1 / sample_fps, which lowers its score).
    """
    for value, name in ((start, "start"), (end, "end")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int frame index, got {value!r}")
    if not 0 <= start < end:
        raise ValueError(f"need 0 <= start < end (frames [start, end) of the clip), got start={start}, end={end}")
    step = max(1.0, _check_number(fps, "fps", positive=True) / _check_number(sample_fps, "sample_fps", positive=True))
    indices = []
    k = 0
    while (index := start + math.floor(k * step + 0.5)) < end:
        indices.append(index)
        k += 1
    if len(indices) < 2 and end - start >= 2:
        indices = [start, end - 1]
    return indices


def _check_clip(frames, name: str = "frames") -> Tensor:
    check_tensor(frames, name, ndim=4, layout=CLIP_LAYOUT, floating=True)
    channels, num_frames = frames.shape[:2]
    if channels not in (1, 3) or num_frames < 2:
        raise ValueError(f"{name} must be {CLIP_LAYOUT}, got shape {tuple(frames.shape)}")
    return frames


def _pair_magnitudes(clips: list[Tensor]) -> list[Tensor]:
    """Flow magnitudes of every clip (C, T_i, H, W), all frame pairs of all clips in one batch."""
    first = torch.cat([rearrange(clip[:, :-1], "c t h w -> t c h w") for clip in clips])
    second = torch.cat([rearrange(clip[:, 1:], "c t h w -> t c h w") for clip in clips])
    magnitudes = optical_flow(first, second).norm(dim=1)                     # (pairs, H, W)
    return list(magnitudes.split([clip.shape[1] - 1 for clip in clips]))


def flow_magnitudes(frames: Tensor) -> Tensor:
    """(T-1, H, W) |flow| in pixels between consecutive frames of a clip (C, T, H, W) in [-1, 1]."""
    return _pair_magnitudes([_check_clip(frames)])[0]


def _score_from_magnitudes(magnitudes: Tensor, sample_fps: float) -> float:
    width = magnitudes.shape[-1]
    return float(magnitudes.mean()) * sample_fps / width


def motion_score(frames: Tensor, sample_fps: float = MOTION_SAMPLE_FPS) -> float:
    """Mean flow magnitude of a clip (C, T, H, W) whose frames are already ``sample_fps`` apart,
    in frame widths per second (mean |flow| in pixels * sample_fps / W)."""
    sample_fps = _check_number(sample_fps, "sample_fps", positive=True)
    return _score_from_magnitudes(flow_magnitudes(frames), sample_fps)


def is_static(score: float, threshold: float = STATIC_MOTION_THRESHOLD) -> bool:
    """True when a motion score (frame widths per second) is below the threshold: drop the clip."""
    return _check_number(score, "score") < _check_number(threshold, "threshold")


def footage_motion_scores(seeds=HELD_OUT_SEEDS, *, noise_sigma: float = 0.0,
                          sample_fps: float = MOTION_SAMPLE_FPS) -> list[dict]:
    """Score every true clip of the benchmark footage: [{"seed", "kind", "score"}, ...].

    Each clip footage.video[:, start:end] is sampled at ``sample_fps`` (source FOOTAGE_FPS) and scored.
    ``noise_sigma`` > 0 adds i.i.d. Gaussian noise (seeded per footage) to the sampled frames, the way
    a camera sensor would.
    """
    noise_sigma = _check_number(noise_sigma, "noise_sigma")
    if noise_sigma < 0:
        raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma}")
    sample_fps = _check_number(sample_fps, "sample_fps", positive=True)
    rows = []
    for seed in seeds:
        footage = make_footage(seed, **FOOTAGE_KWARGS)
        clips = []
        for clip in footage.clips:
            indices = sample_frame_indices(clip.start, clip.end, FOOTAGE_FPS, sample_fps)
            frames = footage.video[:, indices]
            if noise_sigma > 0:
                generator = torch.Generator().manual_seed(seed * 1000 + clip.start)
                frames = (frames + noise_sigma * torch.randn(frames.shape, generator=generator)).clamp(-1, 1)
            clips.append(frames)
        for clip, magnitudes in zip(footage.clips, _pair_magnitudes(clips)):
            rows.append({"seed": seed, "kind": clip.kind, "score": _score_from_magnitudes(magnitudes, sample_fps)})
    return rows


def static_detection_figures(kinds: list[str], scores: list[float], threshold: float) -> dict:
    """Precision and recall of "score < threshold" as a detector of kind == "static"."""
    predicted = [score < threshold for score in scores]
    actual = [kind == "static" for kind in kinds]
    true_positives = sum(p and a for p, a in zip(predicted, actual))
    predicted_positives, actual_positives = sum(predicted), sum(actual)
    return {
        "precision": true_positives / predicted_positives if predicted_positives else float("nan"),
        "recall": true_positives / actual_positives if actual_positives else float("nan"),
        "true_positives": true_positives,
        "predicted_static": predicted_positives,
        "static_clips": actual_positives,
    }


def benchmark_footage_motion(seeds=HELD_OUT_SEEDS, threshold: float = STATIC_MOTION_THRESHOLD) -> dict:
    """Static-clip detection on the true clips of the (held-out) benchmark footage.

    Returns {"precision", "recall", "true_positives", "predicted_static", "static_clips", "clips",
    "threshold", "scores_by_kind": {kind: [scores]}}, scores in frame widths per second.
    """
    threshold = _check_number(threshold, "threshold")
    rows = footage_motion_scores(seeds)
    figures = static_detection_figures([row["kind"] for row in rows], [row["score"] for row in rows], threshold)
    figures["clips"] = len(rows)
    figures["threshold"] = threshold
    figures["scores_by_kind"] = {kind: [row["score"] for row in rows if row["kind"] == kind] for kind in KINDS}
    return figures


def tune_static_threshold(seeds=TUNING_SEEDS, noise_sigma: float = STATIC_NOISE_SIGMA) -> dict:
    """The threshold between noisy static clips and moving clips of the tuning footage.

    Static clips get i.i.d. noise of ``noise_sigma`` (a near-static real clip is never exactly
    still); every other clip is scored as it is. Returns {"threshold": geometric mean of the two
    edges, "max_static_noisy", "min_moving"}.
    """
    seeds = list(seeds)
    noisy = footage_motion_scores(seeds, noise_sigma=noise_sigma)
    clean = footage_motion_scores(seeds)
    max_static = max(row["score"] for row in noisy if row["kind"] == "static")
    min_moving = min(row["score"] for row in clean if row["kind"] != "static")
    return {"threshold": math.sqrt(max_static * min_moving), "max_static_noisy": max_static, "min_moving": min_moving}
