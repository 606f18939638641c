"""SVD's motion filter: 2 fps sampling keeps the right frames, faster motion scores higher, sensor noise
does not look like motion, the score's unit is resolution independent, and static clips of held-out
footage are found with precision and recall >= 0.95."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.curation.motion import (
    MOTION_SAMPLE_FPS,
    STATIC_MOTION_THRESHOLD,
    benchmark_footage_motion,
    flow_magnitudes,
    is_static,
    motion_score,
    sample_frame_indices,
)
from minivdm.curation.optical_flow import optical_flow
from minivdm.toyworld.footage import FOOTAGE_FPS
from minivdm.toyworld.world import MOTION_DIRECTIONS, ToyObject, ToyWorldConfig, background_frames, render

# --- sampling at 2 fps ------------------------------------------------------------------------------


def test_8_fps_footage_keeps_every_fourth_frame():
    assert MOTION_SAMPLE_FPS == 2.0 and FOOTAGE_FPS == 8
    assert sample_frame_indices(0, 16, 8) == [0, 4, 8, 12]
    assert sample_frame_indices(20, 37, 8.0) == [20, 24, 28, 32, 36]


@pytest.mark.parametrize("start, end, fps", [(0, 16, 8), (3, 50, 25), (7, 30, 29.97), (0, 100, 60), (5, 9, 2.0),
                                             (0, 10, 1.0)])
def test_sampled_frames_lie_in_the_clip_and_are_one_sample_period_apart(start, end, fps):
    indices = sample_frame_indices(start, end, fps)
    step = max(1.0, fps / MOTION_SAMPLE_FPS)
    assert indices[0] == start and all(start <= i < end for i in indices)
    assert indices == sorted(set(indices))
    assert all(abs((b - a) - step) <= 1 for a, b in zip(indices, indices[1:]))     # nearest frame to k / 2 s
    assert len(indices) == math.ceil((end - start) / step)                        # none left out at the end


def test_short_clips_keep_two_frames_when_they_have_two():
    assert sample_frame_indices(10, 12, 8) == [10, 11]
    assert sample_frame_indices(10, 13, 8) == [10, 12]
    assert sample_frame_indices(10, 11, 8) == [10]


# --- the score --------------------------------------------------------------------------------------

def toy_clip(speed: float, num_frames: int = 4, motion: str = "right", noise: float = 0.0, seed: int = 0,
             size: int = 32) -> torch.Tensor:
    """(3, T, H, W) clip of one toy square moving ``speed`` px per frame over the textured background."""
    config = ToyWorldConfig(size=size, frames=num_frames, texture=True, max_objects=1)
    dy, dx = MOTION_DIRECTIONS[motion]
    travel = speed * (num_frames - 1)
    obj = ToyObject(colour="green", shape="square", motion=motion if speed > 0 else "still", radius=6,
                    start=(size / 2 - dy * travel / 2, size / 2 - dx * travel / 2), speed=max(speed, 1e-3))
    video = render([obj], config, background=background_frames(config, np.random.default_rng(seed)))["video"]
    if noise:
        video = video + noise * torch.randn(video.shape, generator=torch.Generator().manual_seed(seed))
    return video


def test_faster_motion_scores_higher_and_still_scores_zero():
    # Whole pixels per frame: edges are hard, so a sub-pixel motion shows only when an edge crosses a pixel centre.
    scores = [motion_score(toy_clip(speed)) for speed in (0.0, 1.0, 2.0, 4.0)]
    assert scores[0] < 1e-6
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert is_static(scores[0]) and not any(is_static(s) for s in scores[1:])


def test_sensor_noise_is_not_motion():
    """i.i.d. noise (sigma 0.05) on a still clip changes pixels more than a slow motion does, yet its flow
    has no coherent direction and is smoothed away: the score stays far below a 1 px/frame motion."""
    noisy_still = toy_clip(0.0, noise=0.05, seed=1)
    slow = toy_clip(1.0)
    frame_difference = lambda clip: float((clip[:, 1:] - clip[:, :-1]).abs().mean())   # noqa: E731
    assert frame_difference(noisy_still) > frame_difference(slow)
    noisy_score, slow_score = motion_score(noisy_still), motion_score(slow)
    assert noisy_score < 0.3 * slow_score, (noisy_score, slow_score)
    assert is_static(noisy_score) and not is_static(slow_score)


def test_score_is_a_speed_in_frame_widths_per_second():
    """The same clip at twice the resolution (twice the pixels moved) scores the same, and at twice the
    frame rate (the same pixels in half the time) twice as high."""
    small = toy_clip(1.0, size=32)
    frames = rearrange(small, "c t h w -> t c h w")
    large = rearrange(F.interpolate(frames, scale_factor=2, mode="bilinear"), "t c h w -> c t h w")
    assert motion_score(large) == pytest.approx(motion_score(small), rel=0.2)
    assert motion_score(small, sample_fps=4.0) == pytest.approx(2 * motion_score(small), rel=1e-6)
    magnitudes = flow_magnitudes(small)
    assert magnitudes.shape == (3, 32, 32)
    assert motion_score(small) == pytest.approx(float(magnitudes.mean()) * MOTION_SAMPLE_FPS / 32, rel=1e-6)
    first = optical_flow(small[:, 0], small[:, 1])
    assert torch.allclose(magnitudes[0], first.norm(dim=0), atol=1e-5)


def test_static_clips_of_held_out_footage_are_found():
    figures = benchmark_footage_motion(range(1000, 1006))
    assert figures["clips"] == 36 and figures["static_clips"] > 0
    assert figures["precision"] >= 0.95 and figures["recall"] >= 0.95, figures
    scores = figures["scores_by_kind"]
    # Noise (low_quality), a still text bar (text_overlay) and pans never pass for static.
    for kind in ("normal", "text_overlay", "low_quality"):
        assert all(score > STATIC_MOTION_THRESHOLD for score in scores[kind]), (kind, scores[kind])


# --- validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (lambda: motion_score(torch.zeros(3, 1, 8, 8)), r"\(C, T, H, W\) with C = 3 .* T >= 2"),
    (lambda: motion_score(torch.zeros(1, 3, 4, 8, 8)), r"\(C, T, H, W\)"),
    (lambda: motion_score(torch.zeros(3, 4, 8, 8), sample_fps=0), "sample_fps must be > 0"),
    (lambda: flow_magnitudes(np.zeros((3, 4, 8, 8))), "torch.Tensor"),
    (lambda: sample_frame_indices(5, 5, 8), "start < end"),
    (lambda: sample_frame_indices(0, 5.0, 8), "end must be an int"),
    (lambda: sample_frame_indices(0, 5, 0), "fps must be > 0"),
    (lambda: is_static("0.1"), "score must be a finite number"),
    (lambda: is_static(0.1, threshold=None), "threshold must be a finite number"),
])
def test_bad_inputs_name_what_was_expected(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        bad()
