"""Cut and fade detection: where raw footage must be split into clips.

Stable Video Diffusion (Blattmann et al., "Stable Video Diffusion: Scaling Latent Video Diffusion Models
to Large Datasets", 2023, arXiv:2311.15127, Sec. 3.1 and App. C) splits raw videos into clips with a
cut detector run "in a cascaded manner at three different frame rates": a hard cut changes the picture
from one frame to the next, but a fade changes it a little on every frame, so a single frame-to-frame
threshold misses it. Comparing frames further apart (a lower frame rate) turns the fade back into a jump.

Per-frame features (small; frames are never kept). Every frame x_t is first area-resized to S x S:
    h_t[c]  soft colour histogram of channel c (B bins, sums to 1)                    colour content
    u_t     s x s RGB thumbnail of x_t (by default s = S = 32)                        layout content
Distance between frames i and j, normalised to [0, 1] whatever the resolution:
    d(i, j) = w * 1/3 sum_c 1/2 |h_i[c] - h_j[c]|_1  +  (1 - w) * mean |u_i - u_j| / 2
The cascade level of stride s is the curve d_s(t) = d(t, t + s) (the video watched at fps / s).

Hard cut at frame b (b is the first frame of the new clip): a one-frame spike at stride 1 that persists
at every coarser stride,
    d_1(b - 1) - rho * max_{0 < |k| <= K} d_1(b - 1 + k)  >=  tau_cut          (a spike, not motion)
    min_{b - s <= t < b} d_s(t)  >=  pi * d_1(b - 1)     for every stride s    (not a brief flash)
Fade of L frames starting at frame a: the frames a .. a + L - 1 are blends of the frames around them,
    u_{a-1+k} ~= (1 - w_k) u_{a-1} + w_k u_{a+L},   0 < w_1 < ... < w_L < 1,
with w_k fitted by least squares; it is accepted when the change across it, d_{L+1}(a - 1), is as large
as a cut's (>= tau_fade) while no stride-1 step carries it alone (every step of the ramp
0, w_1, .., w_L, 1 is >= sigma / (L + 1)), and every frame is within a fraction epsilon of the change
from its blend (fitted on the 32 x 32 thumbnail, a moving edge is far from any blend). Fades, up to
``max_fade_seconds * fps`` frames long, are tried before cuts; among overlapping candidates the best fit
wins, near-ties going to the longest (part of a fade fits as well as the whole).

Transitions use the footage labels of ``minivdm.toyworld.footage``: ``Transition(b, "cut", 0)``, and
``Transition(a, "fade", L)`` whose L frames belong to no clip.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from minivdm.validation import check_positive_int, check_tensor

CUT = "cut"
FADE = "fade"
TRANSITION_KINDS = (CUT, FADE)
FRAME_LAYOUT = "(3, H, W)"
CLIP_LAYOUT = "(C, T, H, W) with C = 3"
# Frames are clamped to [-1, 1]; a frame far outside is a layout mistake (e.g. uint8 values 0..255).
RANGE_TOLERANCE = 0.1


@dataclass(frozen=True)
class Transition:
    """A cut (start = first frame of the new clip, length 0) or a fade (start = first fade frame)."""

    start: int
    kind: str
    length: int

    def __post_init__(self):
        if isinstance(self.start, bool) or not isinstance(self.start, int) or self.start < 0:
            raise ValueError(f"Transition.start must be an int >= 0, got {self.start!r}")
        if self.kind not in TRANSITION_KINDS:
            raise ValueError(f"Transition.kind must be one of {TRANSITION_KINDS}, got {self.kind!r}")
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise ValueError(f"Transition.length must be an int, got {self.length!r}")
        if self.kind == CUT and self.length != 0:
            raise ValueError(f"a cut has length 0, got {self.length}")
        if self.kind == FADE and self.length < 1:
            raise ValueError(f"a fade has length >= 1 (its number of frames), got {self.length}")

    @property
    def end(self) -> int:
        """First frame of the clip after the transition."""
        return self.start + self.length


@dataclass(frozen=True)
class CutConfig:
    """Features, the cascade's strides and its thresholds.

    Thresholds are distances in [0, 1] (or shares of one), so they do not depend on the resolution.
    They were tuned on toy footage seeds 0..199 (``make_footage(seed, n_clips=6, clip_frames=16, size=32,
    fade_frames=4)``), each placed between what true transitions and everything else gave there:
    the cut statistic d_1 - rho * (largest nearby step) was >= 0.032 at every cut and <= 0.011 elsewhere
    (tau_cut = 0.02); fade frames lie on their blend (misfit ~0) while windows inside clips, moving,
    panning, noisy or with text, had misfit >= 0.28 (epsilon = 0.15); cuts still measured >= 0.9 of
    their step at strides 2 and 4 (pi = 0.5). ``fps`` only sets the longest fade looked for.
    """

    analysis_size: int = 32          # frames are area-resized to S x S first: resolution-independent, cheap
    histogram_bins: int = 8          # B per channel, soft (triangular) binning so noise moves mass smoothly
    thumbnail_size: int = 32         # s: the layout feature, and the space in which fades are fitted
    histogram_weight: float = 0.5    # w: share of the colour-histogram distance in d(i, j)
    strides: tuple[int, ...] = (1, 2, 4)   # cascade levels: the video watched at fps, fps/2, fps/4
    cut_context: int = 2             # K: stride-1 steps on each side that show the clip's own motion
    cut_ratio: float = 1.0           # rho: a cut's step must exceed rho times the largest nearby step ...
    cut_threshold: float = 0.02      # tau_cut: ... by at least this much
    cut_persistence: float = 0.5     # pi: a cut is still >= pi * its step when watched at every stride
    fade_threshold: float = 0.03     # tau_fade: change across a fade, d(a - 1, a + L)
    fade_max_residual: float = 0.15  # epsilon: distance of a fade frame from its blend, as a share of the change
    fade_min_step: float = 0.4       # sigma: each step of the blend weight, as a share of the even step 1/(L+1)
    fade_tie: float = 0.03           # misfits this close to the best count as a tie (the longest fade wins)
    min_fade_frames: int = 1
    max_fade_seconds: float = 1.0    # longest fade looked for, in seconds (frames = round(seconds * fps))
    name: str = "default"

    def __post_init__(self):
        check_positive_int(self.analysis_size, "analysis_size")
        if check_positive_int(self.histogram_bins, "histogram_bins") < 2:
            raise ValueError(f"histogram_bins must be >= 2, got {self.histogram_bins}")
        check_positive_int(self.thumbnail_size, "thumbnail_size")
        check_positive_int(self.cut_context, "cut_context")
        check_positive_int(self.min_fade_frames, "min_fade_frames")
        if not isinstance(self.strides, tuple) or not self.strides or 1 not in self.strides or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.strides):
            raise ValueError(f"strides must be a tuple of positive ints that includes 1, got {self.strides!r}")
        for name in ("histogram_weight", "cut_persistence", "fade_max_residual", "fade_min_step", "fade_tie"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        for name in ("cut_ratio", "cut_threshold", "fade_threshold", "max_fade_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


# ---------------------------------------------------------------------------------------------------
# Features and distances

def colour_histograms(frames: Tensor, bins: int) -> Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 3, bins) per-channel histograms, each summing to 1.

    Soft binning: a value between two bin centres is shared between them in proportion to closeness,
    so noise or compression moves histogram mass a little instead of flipping whole pixels across bins.
    """
    position = (frames.clamp(-1, 1) + 1) / 2 * (bins - 1)                  # 0 .. bins-1
    centres = torch.arange(bins, dtype=frames.dtype)
    share = (1 - (position[..., None] - centres).abs()).clamp(min=0)       # (N, 3, H, W, bins)
    counts = share.sum(dim=(2, 3))
    return counts / counts.sum(dim=-1, keepdim=True)


def frame_features(frames: Tensor, config: CutConfig) -> tuple[Tensor, Tensor]:
    """(N, 3, H, W) frames -> histograms (N, 3, B) and thumbnails (N, 3, s, s)."""
    small = F.adaptive_avg_pool2d(frames.float(), config.analysis_size)
    thumbnails = F.adaptive_avg_pool2d(small, config.thumbnail_size)
    return colour_histograms(small, config.histogram_bins), thumbnails


def histogram_distance(histogram_a: Tensor, histogram_b: Tensor) -> Tensor:
    """Total variation between histograms (..., 3, B), averaged over channels: 0 = same colours, 1 = disjoint."""
    return ((histogram_a - histogram_b).abs().sum(dim=-1) / 2).mean(dim=-1)


def thumbnail_distance(thumbnail_a: Tensor, thumbnail_b: Tensor) -> Tensor:
    """Mean absolute difference of thumbnails (..., 3, s, s) in [-1, 1], scaled to [0, 1]."""
    return (thumbnail_a - thumbnail_b).abs().mean(dim=(-1, -2, -3)) / 2


def frame_distance(histogram_a, thumbnail_a, histogram_b, thumbnail_b, config: CutConfig) -> Tensor:
    """d(i, j) = w * histogram distance + (1 - w) * thumbnail distance, in [0, 1]."""
    w = config.histogram_weight
    return w * histogram_distance(histogram_a, histogram_b) + (1 - w) * thumbnail_distance(thumbnail_a, thumbnail_b)


def fit_fade(before: Tensor, inside: Tensor, after: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares blend weights of the frames between two anchors, and how far each is from its blend.

    before, after: (3, s, s) thumbnails around a candidate fade; inside: (L, 3, s, s).
    Returns w (L,) with inside[k] ~= (1 - w[k]) before + w[k] after, and misfit (L,): the thumbnail
    distance between each frame and its blend, as a share of the distance between the anchors.
    """
    delta = rearrange(after - before, "c h w -> (c h w)")
    offsets = rearrange(inside - before, "l c h w -> l (c h w)")
    weights = offsets @ delta / delta.dot(delta).clamp(min=1e-12)
    residuals = (offsets - weights[:, None] * delta).abs().mean(dim=1)
    return weights, residuals / delta.abs().mean().clamp(min=1e-12)


# ---------------------------------------------------------------------------------------------------
# Input checks

def _check_fps(fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    return float(fps)


def _check_config(config) -> CutConfig:
    if not isinstance(config, CutConfig):
        raise TypeError(f"config must be a CutConfig, got {type(config).__name__}")
    return config


def _check_values(x: Tensor, name: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    low, high = x.min().item(), x.max().item()
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name} values must be in [-1, 1], got [{low:.3g}, {high:.3g}]; convert uint8 frames "
                         f"with minivdm.io.video_files.frames_to_video")


def _check_clip(video) -> Tensor:
    check_tensor(video, "video", ndim=4, layout=CLIP_LAYOUT, floating=True)
    if video.shape[0] != 3:
        raise ValueError(f"video must be {CLIP_LAYOUT}, got shape {tuple(video.shape)}")
    if video.shape[1] == 0 or video.shape[2] == 0 or video.shape[3] == 0:
        raise ValueError(f"video must have at least one frame and pixel, got shape {tuple(video.shape)}")
    _check_values(video, "video")
    return video


# ---------------------------------------------------------------------------------------------------
# The streaming detector

class CutDetector:
    """Push frames one at a time (``push``), then ``finish`` for the transitions, sorted by start.

    Memory is bounded: only the features of a window of frames are kept (twice the longest fade ahead
    of the next decision, the largest stride behind it), never the frames, so a long file can be
    streamed. Decisions are made in time order as soon as enough later frames have arrived. ``fps``
    sets the longest fade looked for (``config.max_fade_seconds``); strides are in frames.
    """

    def __init__(self, fps: float, config: CutConfig = CutConfig()):
        self.fps = _check_fps(fps)
        self.config = _check_config(config)
        self.max_fade_frames = max(config.min_fade_frames, round(self.fps * config.max_fade_seconds))
        # Frames after a boundary needed to decide it: the end anchors of every fade that overlaps one
        # starting there, the cut's context and the coarsest stride's pairs across it.
        self._lookahead = max(2 * self.max_fade_frames, config.cut_context, max(config.strides) - 1)
        self._lookbehind = max(max(config.strides), config.cut_context + 1)
        self._histograms: dict[int, Tensor] = {}   # frame index -> (3, B), only a window of recent frames
        self._thumbnails: dict[int, Tensor] = {}   # frame index -> (3, s, s)
        self._steps: dict[int, float] = {}         # t -> d(t, t + 1)
        self._steps_across_transitions: set[int] = set()   # steps that are a found cut or fade, not motion
        self._frame_size: tuple[int, int] | None = None
        self._num_frames = 0
        self._position = 1          # the next frame that could start a transition
        self._transitions: list[Transition] = []
        self._finished = False

    @property
    def stored_frames(self) -> int:
        """How many frames' features are held now: bounded by the lookahead and lookbehind, not the video."""
        return len(self._thumbnails)

    # --- input -----------------------------------------------------------------------------------
    def push(self, frame: Tensor) -> None:
        """Add the next frame, (3, H, W) float in [-1, 1]; frames must come in order, all the same size."""
        if self._finished:
            raise RuntimeError("finish() was already called; make a new CutDetector for another video")
        check_tensor(frame, "frame", ndim=3, layout=FRAME_LAYOUT, floating=True)
        if frame.shape[0] != 3 or frame.shape[1] == 0 or frame.shape[2] == 0:
            raise ValueError(f"frame must be {FRAME_LAYOUT} (RGB), got shape {tuple(frame.shape)}")
        if self._frame_size is None:
            self._frame_size = tuple(frame.shape[1:])
        elif tuple(frame.shape[1:]) != self._frame_size:
            raise ValueError(f"every frame must have the same (H, W) = {self._frame_size}, "
                             f"got {tuple(frame.shape[1:])} at frame {self._num_frames}")
        _check_values(frame, "frame")

        histograms, thumbnails = frame_features(frame.detach().cpu()[None], self.config)
        t = self._num_frames
        self._histograms[t], self._thumbnails[t] = histograms[0], thumbnails[0]
        self._num_frames += 1
        if t > 0:
            self._steps[t - 1] = self._distance(t - 1, t)
        while self._position + self._lookahead < self._num_frames:
            self._decide(self._position)
        self._forget()

    def finish(self) -> list[Transition]:
        """Decide the last frames (with the frames there are) and return every transition, sorted by start."""
        if not self._finished:
            while self._position < self._num_frames:
                self._decide(self._position)
            self._finished = True
        return list(self._transitions)

    # --- decisions -------------------------------------------------------------------------------
    def _distance(self, i: int, j: int) -> float:
        return float(frame_distance(self._histograms[i], self._thumbnails[i],
                                    self._histograms[j], self._thumbnails[j], self.config))

    def _decide(self, start: int) -> None:
        """Does a fade begin at (or overlap from) frame ``start``, or is ``start`` the first frame after a cut?"""
        fade = self._best_fade(start)
        if fade is not None:
            self._transitions.append(fade)
            self._steps_across_transitions.update(range(fade.start - 1, fade.end))
            # The fade's last anchor (fade.end) opens the new clip; the next transition comes after it.
            self._position = fade.end + 1
            return
        if self._is_cut(start):
            self._transitions.append(Transition(start, CUT, 0))
            self._steps_across_transitions.add(start - 1)
        self._position = start + 1

    def _fade_fits(self, start: int) -> list[tuple[float, int]]:
        """(misfit, L) for every L such that frames start .. start + L - 1 fade between their neighbours.

        misfit is the largest distance of a frame from its blend, as a share of the change across the fade.
        """
        config = self.config
        longest = min(self.max_fade_frames, self._num_frames - 1 - start)
        if start < 1 or longest < config.min_fade_frames:
            return []
        frames = range(start - 1, start + longest + 1)      # the anchor before, then every frame that may follow
        histograms = torch.stack([self._histograms[t] for t in frames])
        thumbnails = torch.stack([self._thumbnails[t] for t in frames])
        # The change across each candidate: d(start - 1, start + L) for every L at once.
        changes = frame_distance(histograms[:1], thumbnails[:1], histograms[1:], thumbnails[1:], config)
        fits = []
        for length in range(config.min_fade_frames, longest + 1):
            if changes[length - 1] < config.fade_threshold:
                continue
            weights, misfits = fit_fade(thumbnails[0], thumbnails[1: length + 1], thumbnails[length + 1])
            ramp = torch.cat([torch.zeros(1), weights, torch.ones(1)])
            misfit = misfits.max().item()
            if misfit <= config.fade_max_residual and (ramp.diff() >= config.fade_min_step / (length + 1)).all():
                fits.append((misfit, length))
        return fits

    def _best_fade(self, start: int) -> Transition | None:
        """The fade that best explains the frames from ``start`` on, if any fade starts at ``start``.

        A candidate can reach one frame into a clip that barely moves (that frame is nearly on the
        blend), so every fade overlapping the first candidate competes: the best fit wins, and near-ties
        (within fade_tie) go to the longest, because part of a fade fits as well as the whole fade.
        """
        first = self._fade_fits(start)
        if not first:
            return None
        overlap_end = start + max(length for _, length in first)
        candidates = [(misfit, fade_start, length) for fade_start in range(start, overlap_end)
                      for misfit, length in (first if fade_start == start else self._fade_fits(fade_start))]
        best = min(misfit for misfit, _, _ in candidates)
        near_best = [(length, -misfit, -fade_start) for misfit, fade_start, length in candidates
                     if misfit <= best + self.config.fade_tie]
        length, _, negative_start = max(near_best)
        return Transition(-negative_start, FADE, length)

    def _is_cut(self, start: int) -> bool:
        """A stride-1 spike between frames start - 1 and start that persists at every stride."""
        config = self.config
        if start - 1 not in self._steps:
            return False
        step = self._steps[start - 1]
        # The clip's own motion: nearby steps, except those that are transitions already found.
        nearby = [self._steps[t] for t in range(start - 1 - config.cut_context, start + config.cut_context)
                  if t != start - 1 and t in self._steps and t not in self._steps_across_transitions]
        motion = max(nearby, default=0.0)
        if step - config.cut_ratio * motion < config.cut_threshold:
            return False
        # Watched at a lower frame rate a cut is still a change; a brief flash, back to the same scene, is not.
        for stride in config.strides:
            if stride == 1:
                continue
            across = [self._distance(t, t + stride) for t in range(start - stride, start)
                      if t >= 0 and t + stride < self._num_frames]
            if across and min(across) < config.cut_persistence * step:
                return False
        return True

    def _forget(self) -> None:
        """Drop features no decision will look at again (bounded memory on long videos)."""
        oldest_needed = self._position - self._lookbehind - 1
        for t in [t for t in self._histograms if t < oldest_needed]:
            del self._histograms[t], self._thumbnails[t]
        for t in [t for t in self._steps if t < oldest_needed]:
            del self._steps[t]
        self._steps_across_transitions = {t for t in self._steps_across_transitions if t >= oldest_needed}


# ---------------------------------------------------------------------------------------------------
# Whole clips

def detect_transitions(video: Tensor, fps: float, config: CutConfig = CutConfig()) -> list[Transition]:
    """Cuts and fades of a video (C, T, H, W) with C = 3 in [-1, 1], sorted by start.

    The frames go through a CutDetector one by one, so the result is exactly the streaming result.
    """
    video = _check_clip(video)
    detector = CutDetector(fps, config)
    for t in range(video.shape[1]):
        detector.push(video[:, t])
    return detector.finish()


def cut_signals(video: Tensor, fps: float, config: CutConfig = CutConfig()) -> dict[str, Tensor]:
    """The cascade's distance curves, each (T,) with NaN where t + s is past the end.

    ``stride_{s}``: d(t, t + s) for every stride s of the config (the video watched at fps / s);
    ``histogram_stride_1`` and ``thumbnail_stride_1``: the two parts of d(t, t + 1);
    ``cut_score``: d(t, t + 1) - rho * (largest step within K), the statistic compared with tau_cut
    (here without leaving out the steps of transitions already found, as the detector does).
    """
    video = _check_clip(video)
    _check_fps(fps)
    config = _check_config(config)
    frames = rearrange(video.detach().cpu(), "c t h w -> t c h w")
    histograms, thumbnails = frame_features(frames, config)
    num_frames = frames.shape[0]
    signals = {}
    for stride in config.strides:
        curve = torch.full((num_frames,), float("nan"))
        if stride < num_frames:
            curve[:-stride] = frame_distance(histograms[:-stride], thumbnails[:-stride],
                                             histograms[stride:], thumbnails[stride:], config)
        signals[f"stride_{stride}"] = curve
    for name, distance, features in (("histogram", histogram_distance, histograms),
                                     ("thumbnail", thumbnail_distance, thumbnails)):
        curve = torch.full((num_frames,), float("nan"))
        if num_frames > 1:
            curve[:-1] = distance(features[:-1], features[1:])
        signals[f"{name}_stride_1"] = curve
    steps = signals["stride_1"]
    score = torch.full((num_frames,), float("nan"))
    for t in range(num_frames - 1):
        context = range(max(0, t - config.cut_context), min(num_frames - 1, t + config.cut_context + 1))
        nearby = [steps[u].item() for u in context if u != t]
        score[t] = steps[t] - config.cut_ratio * max(nearby, default=0.0)
    signals["cut_score"] = score
    return signals


def _as_transitions(transitions, name: str) -> list[Transition]:
    if not isinstance(transitions, (list, tuple)):
        raise TypeError(f"{name} must be a list of Transition or (start, kind, length) tuples, "
                        f"got {type(transitions).__name__}")
    result = []
    for item in transitions:
        if isinstance(item, Transition):
            result.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            result.append(Transition(*item))
        else:
            raise TypeError(f"{name} must hold Transition or (start, kind, length) tuples, got {item!r}")
    return sorted(result, key=lambda transition: transition.start)


def clips_between(num_frames: int, transitions: list[Transition], min_frames: int = 2) -> list[tuple[int, int]]:
    """(start, end) of the clips that the transitions cut a video of ``num_frames`` into.

    Fade frames belong to no clip; clips shorter than ``min_frames`` are dropped. end is one past the
    last frame, so ``video[:, start:end]`` is the clip.
    """
    check_positive_int(num_frames, "num_frames")
    check_positive_int(min_frames, "min_frames")
    transitions = _as_transitions(transitions, "transitions")
    clips, start = [], 0
    for transition in transitions:
        if transition.start < start:
            raise ValueError(f"transitions overlap or repeat: {transition} starts inside the previous one "
                             f"(which ends at frame {start})")
        if transition.end > num_frames or transition.start == 0 and transition.kind == CUT:
            raise ValueError(f"{transition} does not fit a video of {num_frames} frames (a cut starts at "
                             f"frame 1 .. T - 1, a fade ends by frame T)")
        clips.append((start, transition.start))
        start = transition.end
    clips.append((start, num_frames))
    return [(start, end) for start, end in clips if end - start >= min_frames]


# ---------------------------------------------------------------------------------------------------
# Measuring

def _span(transition: Transition) -> tuple[int, int]:
    """Frames a transition occupies (inclusive): a cut its first new frame, a fade its fade frames."""
    return transition.start, transition.start + max(transition.length, 1) - 1


def _match(predicted: list[Transition], truth: list[Transition], tolerance: int) -> list[tuple[int, int]]:
    """One-to-one (predicted index, true index) pairs whose spans overlap, the truth widened by tolerance.

    Pairs are taken greedily, same kind and nearest first, so a detection is never counted twice.
    """
    candidates = []
    for i, guess in enumerate(predicted):
        guess_first, guess_last = _span(guess)
        for j, true in enumerate(truth):
            true_first, true_last = _span(true)
            if guess_first <= true_last + tolerance and guess_last >= true_first - tolerance:
                gap = abs(guess.start - true.start) + abs(guess.end - true.end)
                candidates.append((guess.kind != true.kind, gap, i, j))
    pairs, used_predicted, used_truth = [], set(), set()
    for _, _, i, j in sorted(candidates):
        if i not in used_predicted and j not in used_truth:
            pairs.append((i, j))
            used_predicted.add(i)
            used_truth.add(j)
    return pairs


def _transition_counts(predicted: list[Transition], truth: list[Transition], tolerance: int) -> dict[str, int]:
    pairs = _match(predicted, truth, tolerance)
    counts = {"predicted": len(predicted), "true": len(truth), "matched": len(pairs),
              "matched_same_kind": sum(predicted[i].kind == truth[j].kind for i, j in pairs),
              "matched_exactly": sum(predicted[i] == truth[j] for i, j in pairs)}
    for kind in TRANSITION_KINDS:
        counts[f"{kind}_predicted"] = sum(t.kind == kind for t in predicted)
        counts[f"{kind}_true"] = sum(t.kind == kind for t in truth)
        counts[f"{kind}_matched"] = sum(predicted[i].kind == kind and truth[j].kind == kind for i, j in pairs)
    return counts


def _ratio(numerator: int, denominator: int) -> float:
    # No predictions means no false ones (precision 1); nothing to find means nothing missed (recall 1).
    return numerator / denominator if denominator else 1.0


def _figures(counts: dict[str, int]) -> dict:
    figures = dict(counts)
    figures["precision"] = _ratio(counts["matched"], counts["predicted"])
    figures["recall"] = _ratio(counts["matched"], counts["true"])
    total = figures["precision"] + figures["recall"]
    figures["f1"] = 2 * figures["precision"] * figures["recall"] / total if total else 0.0
    figures["kind_accuracy"] = _ratio(counts["matched_same_kind"], counts["matched"])
    figures["exact_accuracy"] = _ratio(counts["matched_exactly"], counts["matched"])
    for kind in TRANSITION_KINDS:
        figures[f"{kind}_precision"] = _ratio(counts[f"{kind}_matched"], counts[f"{kind}_predicted"])
        figures[f"{kind}_recall"] = _ratio(counts[f"{kind}_matched"], counts[f"{kind}_true"])
    return figures


def transition_precision_recall(predicted: list[Transition], truth: list[tuple[int, str, int]] | list[Transition],
                                tolerance: int = 1) -> dict:
    """Precision and recall of detected transitions against the true ones.

    A detection matches a true transition (one to one) when its frames overlap the truth's frames
    widened by ``tolerance`` on each side; a cut occupies its first new frame, a fade its fade frames.
    ``precision`` / ``recall`` / ``f1`` count any transition (a fade found as a cut is found);
    ``kind_accuracy`` is the share of matches with the right kind (``exact_accuracy``: right kind, start
    and length); ``cut_precision``, ``cut_recall``,
    ``fade_precision``, ``fade_recall`` count only matches of that kind. The counts are included.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be an int >= 0 (frames), got {tolerance!r}")
    counts = _transition_counts(_as_transitions(predicted, "predicted"), _as_transitions(truth, "truth"), tolerance)
    return _figures(counts)


def clip_recovery(true_clips: Iterable[tuple[int, int]], found_clips: Iterable[tuple[int, int]],
                  tolerance: int = 1) -> tuple[int, int]:
    """(recovered, total): true clips with a found clip whose start and end are each within tolerance."""
    found_clips = list(found_clips)
    true_clips = list(true_clips)
    recovered = sum(any(abs(start - found_start) <= tolerance and abs(end - found_end) <= tolerance
                        for found_start, found_end in found_clips)
                    for start, end in true_clips)
    return recovered, len(true_clips)


def benchmark_footage_cuts(seeds=range(1000, 1050), *, config: CutConfig = CutConfig(), size: int = 32,
                           upscale: int = 1) -> dict:
    """Run the detector on toy footage and return its figures (pooled over all footages).

    The footage is ``make_footage(seed, n_clips=6, clip_frames=16, size=size, fade_frames=4)`` at
    FOOTAGE_FPS; the default seeds are the held-out set (thresholds were tuned on 0..199). ``upscale``
    enlarges every frame with nearest neighbour first (the figures should not change). Besides the
    figures of ``transition_precision_recall``: ``clip_recovery``, the share of true clips found with
    start and end within one frame, and ``missed`` / ``spurious``, lists of (seed, start, kind, length).
    """
    from minivdm.toyworld.footage import FOOTAGE_FPS, make_footage   # toyworld is a leaf; keep import local

    check_positive_int(upscale, "upscale")
    seeds = list(seeds)
    totals: dict[str, int] = {}
    recovered = total_clips = 0
    missed, spurious = [], []
    for seed in seeds:
        footage = make_footage(seed, n_clips=6, clip_frames=16, size=size, fade_frames=4)
        video = footage.video
        if upscale > 1:
            video = rearrange(F.interpolate(rearrange(video, "c t h w -> t c h w"), scale_factor=upscale,
                                            mode="nearest"), "t c h w -> c t h w")
        predicted = detect_transitions(video, FOOTAGE_FPS, config)
        truth = _as_transitions(footage.transitions, "truth")
        for key, value in _transition_counts(predicted, truth, 1).items():
            totals[key] = totals.get(key, 0) + value
        pairs = _match(predicted, truth, 1)
        missed += [(seed, t.start, t.kind, t.length) for j, t in enumerate(truth) if j not in {j for _, j in pairs}]
        spurious += [(seed, t.start, t.kind, t.length) for i, t in enumerate(predicted)
                     if i not in {i for i, _ in pairs}]
        found, count = clip_recovery([(clip.start, clip.end) for clip in footage.clips],
                                     clips_between(video.shape[1], predicted))
        recovered += found
        total_clips += count
    figures = _figures(totals)
    figures.update(clip_recovery=_ratio(recovered, total_clips), clips_recovered=recovered, clips_true=total_clips,
                   missed=missed, spurious=spurious, footages=len(seeds))
    return figures
