"""Cut and fade detection: cuts and fades are found where they are, motion is not a cut, streaming is exact."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.curation.cuts import (
    CutConfig,
    CutDetector,
    Transition,
    benchmark_footage_cuts,
    clips_between,
    cut_signals,
    detect_transitions,
    transition_precision_recall,
)
from minivdm.toyworld import ToyWorldConfig, generate
from minivdm.toyworld.footage import FOOTAGE_FPS, make_footage

FPS = FOOTAGE_FPS


def constant_frames(colour, num_frames: int, size: int = 24) -> torch.Tensor:
    """(3, T, H, W) video of one flat colour."""
    return torch.tensor(colour, dtype=torch.float32).view(3, 1, 1, 1).expand(3, num_frames, size, size).clone()


def toy_clip(seed: int, num_frames: int = 12, pan: bool = False) -> torch.Tensor:
    """(3, T, 32, 32) toy-world clip with moving objects over a textured (optionally panning) background."""
    config = ToyWorldConfig(frames=num_frames, texture=True, camera_pan=pan, name="cuts-test")
    return generate(1, seed=seed, config=config).video[0]


def cross_fade(first: torch.Tensor, second: torch.Tensor, length: int) -> torch.Tensor:
    """first, L frames blending its last frame into second's first frame linearly, then second."""
    w = torch.arange(1, length + 1, dtype=torch.float32).view(1, -1, 1, 1) / (length + 1)
    blend = (1 - w) * first[:, -1:] + w * second[:, :1]
    return torch.cat([first, blend, second], dim=1)


def upscale(video: torch.Tensor, factor: int) -> torch.Tensor:
    frames = F.interpolate(rearrange(video, "c t h w -> t c h w"), scale_factor=factor, mode="nearest")
    return rearrange(frames, "t c h w -> c t h w")


# --- what is found ------------------------------------------------------------------------------------

def test_a_hard_cut_between_constant_frames_is_found_at_the_first_new_frame():
    generator = torch.Generator().manual_seed(0)
    checked = 0
    while checked < 6:
        colours = torch.rand(2, 3, generator=generator) * 2 - 1
        if (colours[0] - colours[1]).abs().mean() < 0.3:
            continue          # nearly the same colour: not a cut anyone would mark
        position = 3 + checked
        video = torch.cat([constant_frames(colours[0].tolist(), position),
                           constant_frames(colours[1].tolist(), 9)], dim=1)
        assert detect_transitions(video, FPS) == [Transition(position, "cut", 0)], colours
        checked += 1


def test_a_hard_cut_between_moving_scenes_is_found():
    video = torch.cat([toy_clip(1), toy_clip(2, pan=True)], dim=1)
    assert detect_transitions(video, FPS) == [Transition(12, "cut", 0)]


@pytest.mark.parametrize("length", [1, 3, 4, 7])
def test_a_linear_cross_fade_is_one_fade_with_its_start_and_length(length):
    flat = cross_fade(constant_frames((0.6, -0.4, -0.2), 10), constant_frames((-0.5, 0.3, 0.7), 10), length)
    assert detect_transitions(flat, FPS) == [Transition(10, "fade", length)]
    moving = cross_fade(toy_clip(3), toy_clip(4), length)
    assert detect_transitions(moving, FPS) == [Transition(12, "fade", length)]


def test_motion_pans_noise_and_text_alone_give_no_transition():
    for seed in range(4):
        assert detect_transitions(toy_clip(10 + seed, num_frames=40, pan=True), FPS) == []
    for kind in ("normal", "static", "text_overlay", "low_quality"):
        footage = make_footage(7, kinds=(kind,), clip_frames=40)
        assert detect_transitions(footage.video, FPS) == [], kind


@pytest.mark.parametrize("flash_frames", [1, 2, 3])
def test_a_flash_shorter_than_the_coarsest_stride_is_not_a_cut(flash_frames):
    """A cut must persist when the video is watched at fps / s; a brief flash comes back to the same scene."""
    video = make_footage(5, kinds=("normal",), clip_frames=30).video
    video[:, 12: 12 + flash_frames] = (video[:, 12: 12 + flash_frames] + 1.2).clamp(max=1.0)
    assert detect_transitions(video, FPS) == []


def test_resolution_does_not_change_the_answer():
    for seed in (1000, 1001):
        footage = make_footage(seed, n_clips=4, clip_frames=16, size=32, fade_frames=4)
        truth = [Transition(*t) for t in footage.transitions]
        assert detect_transitions(footage.video, FPS) == truth
        assert detect_transitions(upscale(footage.video, 4), FPS) == truth
    footage = make_footage(1002, n_clips=4, clip_frames=16, size=64, fade_frames=4)
    assert detect_transitions(footage.video, FPS) == [Transition(*t) for t in footage.transitions]


def test_held_out_footage_precision_and_recall():
    figures = benchmark_footage_cuts(range(1000, 1010))
    assert figures["true"] == 50
    for name in ("precision", "recall", "cut_precision", "cut_recall", "fade_precision", "fade_recall",
                 "clip_recovery"):
        assert figures[name] >= 0.95, (name, figures[name], figures["missed"], figures["spurious"])


# --- streaming ----------------------------------------------------------------------------------------

def test_pushing_frames_one_by_one_gives_what_detect_transitions_gives_in_bounded_memory():
    footages = [make_footage(seed, n_clips=6, clip_frames=16, fade_frames=4) for seed in (1003, 1004, 1005)]
    video = torch.cat([f.video for f in footages], dim=1)           # joined by two more hard cuts
    detector = CutDetector(FPS)
    most_stored = 0
    for t in range(video.shape[1]):
        detector.push(video[:, t].clone())
        most_stored = max(most_stored, detector.stored_frames)
    streamed = detector.finish()
    assert streamed == detect_transitions(video, FPS)
    assert streamed == sorted(streamed, key=lambda transition: transition.start)
    assert detector.finish() == streamed                             # finishing twice changes nothing
    # Features of a window of frames, not of the whole video: the same for a 3x shorter video.
    short = CutDetector(FPS)
    most_stored_short = 0
    for t in range(footages[0].video.shape[1]):
        short.push(footages[0].video[:, t])
        most_stored_short = max(most_stored_short, short.stored_frames)
    assert most_stored == most_stored_short < 40


def test_cut_signals_show_the_cut_as_a_spike_at_every_stride():
    video = torch.cat([toy_clip(1), toy_clip(2)], dim=1)       # cut between frames 11 and 12
    signals = cut_signals(video, FPS)
    for stride in CutConfig().strides:
        curve = signals[f"stride_{stride}"]
        assert curve.shape == (24,) and torch.isnan(curve[24 - stride:]).all()
        crossing = curve[12 - stride: 12]                        # pairs (t, t + stride) across the cut
        within = torch.cat([curve[: 12 - stride], curve[12: 24 - stride]])
        assert crossing.min() > 2 * within.max(), stride
    assert signals["cut_score"].nan_to_num(-1).argmax() == 11
    assert set(signals) >= {"histogram_stride_1", "thumbnail_stride_1"}


# --- clips and scores ---------------------------------------------------------------------------------

def test_clips_between_tiles_the_video_with_the_transitions():
    for seed in range(5):
        footage = make_footage(seed, n_clips=5, clip_frames=6, fade_frames=3)
        clips = clips_between(footage.video.shape[1], footage.transitions)
        assert clips == [(clip.start, clip.end) for clip in footage.clips]
        # Clips and fade frames cover every frame exactly once.
        covered = sorted([t for start, end in clips for t in range(start, end)]
                         + [t for start, kind, length in footage.transitions for t in range(start, start + length)])
        assert covered == list(range(footage.video.shape[1]))
    transitions = [Transition(10, "cut", 0), Transition(11, "fade", 3), Transition(20, "cut", 0)]
    assert clips_between(30, transitions) == [(0, 10), (14, 20), (20, 30)]            # (10, 11) is too short
    assert clips_between(30, transitions, min_frames=1) == [(0, 10), (10, 11), (14, 20), (20, 30)]
    assert clips_between(30, []) == [(0, 30)]


def test_precision_recall_counts_a_fade_found_as_a_cut_as_found_but_of_the_wrong_kind():
    truth = [(10, "cut", 0), (30, "fade", 4)]
    exact = transition_precision_recall([Transition(10, "cut", 0), Transition(30, "fade", 4)], truth)
    assert exact["precision"] == exact["recall"] == exact["kind_accuracy"] == exact["exact_accuracy"] == 1.0
    as_cut = transition_precision_recall([Transition(11, "cut", 0), Transition(34, "cut", 0)], truth)
    assert as_cut["precision"] == as_cut["recall"] == 1.0                 # 11 is within 1 frame of 10
    assert as_cut["kind_accuracy"] == 0.5 and as_cut["fade_recall"] == 0.0 and as_cut["cut_recall"] == 1.0
    assert as_cut["cut_precision"] == 0.5
    far = transition_precision_recall([Transition(12, "cut", 0)], truth)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    assert transition_precision_recall([Transition(12, "cut", 0)], truth, tolerance=2)["recall"] == 0.5
    # One detection finds one transition: a second detection of the same cut is a false one.
    twice = transition_precision_recall([Transition(10, "cut", 0), Transition(11, "cut", 0)], [(10, "cut", 0)])
    assert twice["precision"] == 0.5 and twice["recall"] == 1.0
    nothing = transition_precision_recall([], [])
    assert nothing["precision"] == nothing["recall"] == 1.0


# --- input checks -------------------------------------------------------------------------------------

def test_bad_inputs_are_refused_with_the_expected_layout():
    video = torch.zeros(3, 4, 8, 8)
    with pytest.raises(ValueError, match=r"\(C, T, H, W\) with C = 3"):
        detect_transitions(rearrange(video, "c t h w -> t c h w"), FPS)
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        detect_transitions(video[None], FPS)
    with pytest.raises(TypeError, match="floating"):
        detect_transitions(video.to(torch.uint8), FPS)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        detect_transitions(video + 200, FPS)
    with pytest.raises(ValueError, match="NaN"):
        detect_transitions(video * float("nan"), FPS)
    with pytest.raises(ValueError, match="fps"):
        detect_transitions(video, 0)
    with pytest.raises(TypeError, match="CutConfig"):
        detect_transitions(video, FPS, config={"cut_threshold": 0.1})
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        cut_signals(video[0], FPS)

    detector = CutDetector(FPS)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        detector.push(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        detector.push(video)
    detector.push(video[:, 0])
    with pytest.raises(ValueError, match="same"):
        detector.push(torch.zeros(3, 16, 16))
    detector.finish()
    with pytest.raises(RuntimeError, match="finish"):
        detector.push(video[:, 1])

    with pytest.raises(ValueError, match="strides"):
        CutConfig(strides=(2, 4))
    with pytest.raises(ValueError, match="kind"):
        Transition(3, "wipe", 0)
    with pytest.raises(ValueError, match="cut has length 0"):
        Transition(3, "cut", 2)
    with pytest.raises(ValueError, match="overlap"):
        clips_between(20, [Transition(5, "fade", 4), Transition(7, "cut", 0)])
    with pytest.raises(ValueError, match="does not fit"):
        clips_between(20, [Transition(18, "fade", 4)])
    with pytest.raises(TypeError, match="Transition"):
        transition_precision_recall([5], [(5, "cut", 0)])
    with pytest.raises(ValueError, match="tolerance"):
        transition_precision_recall([], [], tolerance=-1)
