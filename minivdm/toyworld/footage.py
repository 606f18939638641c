"""Raw footage: toy-world clips joined by hard cuts and cross-fades, every clip and transition labelled.

Data curation for video models (Stable Video Diffusion, Blattmann et al. 2023, arXiv:2311.15127)
starts from long raw videos: it detects cuts and fades to split them into clips, then drops clips that
do not move, carry text overlays or look bad. This module makes such footage with the answers
attached, so a curation pipeline can be measured exactly.

Clip kinds
    normal        a toy-world scene with at least one moving object (and sometimes a camera pan)
    static        the same frame repeated: objects stand still, no pan (frame difference is zero)
    text_overlay  a normal scene under a static bar of blocky white glyphs on near-black
    low_quality   a normal scene made blocky (2x2 pixel blocks) and noisy (Gaussian, sigma 0.15)

Transitions
    cut   the next clip starts on the next frame: (first frame of the new clip, "cut", 0)
    fade  ``fade_frames`` frames between the clips mix the last frame of one with the first frame of
          the next: frame k = (1 - w_k) * last + w_k * first, w_k = (k + 1) / (fade_frames + 1);
          labelled (first fade frame, "fade", fade_frames). Fade frames belong to no clip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from minivdm.toyworld.world import ToyWorldConfig, background_frames, caption_for, render, sample_objects
from minivdm.validation import check_positive_int

KINDS = ("normal", "static", "text_overlay", "low_quality")
FOOTAGE_FPS = 8             # frames per second when footage is played or written to a file
# Raw footage is mostly usable: when kinds are not given, half the clips are normal.
KIND_PROBABILITIES = (0.5, 1 / 6, 1 / 6, 1 / 6)
PAN_PROBABILITY = 0.3
LOW_QUALITY_NOISE = 0.15    # sigma, in [-1, 1] units
GLYPH_HEIGHT, GLYPH_WIDTH = 5, 3
TEXT_BAR_VALUE = -0.9       # near-black bar, [-1, 1] units
TEXT_VALUE = 1.0            # white glyphs


@dataclass
class FootageClip:
    start: int      # first frame
    end: int        # one past the last frame
    kind: str       # one of KINDS
    caption: str    # toy-world caption of the scene


@dataclass
class Footage:
    video: Tensor                              # (3, T, H, W) float32 in [-1, 1]
    clips: list[FootageClip]
    transitions: list[tuple[int, str, int]]    # (first frame of the transition, "cut" | "fade", length)


def _scene(rng: np.random.Generator, config: ToyWorldConfig, kind: str, avoid_colours: set[str]):
    """Objects of one clip: none in the previous clip's colours (so a cut changes what is seen), and
    at least one moving object unless the clip is static."""
    while True:
        objects = sample_objects(rng, config)
        if {o.colour for o in objects} & avoid_colours:
            continue
        if kind == "static":
            return [dataclasses.replace(o, motion="still") for o in objects]
        if any(o.motion != "still" for o in objects):
            return objects


def _text_bar(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W) bool bar region and (H, W) bool glyph pixels: a line of random 3x5 blocky 'letters'."""
    scale = max(1, size // 32)
    height = (GLYPH_HEIGHT + 2) * scale
    top = size - height - scale
    bar = np.zeros((size, size), dtype=bool)
    bar[top: top + height] = True
    glyphs = np.zeros((size, size), dtype=bool)
    x = scale
    while x + GLYPH_WIDTH * scale <= size - scale:
        letter = rng.random((GLYPH_HEIGHT, GLYPH_WIDTH)) < 0.55
        block = np.kron(letter, np.ones((scale, scale), dtype=bool))
        glyphs[top + scale: top + scale + GLYPH_HEIGHT * scale, x: x + GLYPH_WIDTH * scale] = block
        x += (GLYPH_WIDTH + 1) * scale
    return bar, glyphs


def _degrade(video: Tensor, seed: int) -> Tensor:
    """Low quality: 2x2 blocks (lost resolution) plus per-frame Gaussian noise."""
    frames = rearrange(video, "c t h w -> t c h w")
    blocky = F.interpolate(F.avg_pool2d(frames, 2), size=frames.shape[-2:], mode="nearest")
    blocky = rearrange(blocky, "t c h w -> c t h w")
    generator = torch.Generator().manual_seed(seed)
    noise = LOW_QUALITY_NOISE * torch.randn(blocky.shape, generator=generator)
    return (blocky + noise).clamp(-1, 1)


def _make_clip(rng: np.random.Generator, kind: str, clip_frames: int, size: int,
               avoid_colours: set[str]) -> tuple[Tensor, str, set[str]]:
    pan = kind != "static" and rng.random() < PAN_PROBABILITY
    config = ToyWorldConfig(size=size, frames=clip_frames, texture=True, name="footage")
    objects = _scene(rng, config, kind, avoid_colours)
    pan_velocity = (0.0, 0.0)
    if pan:
        angle = rng.uniform(0, 2 * np.pi)
        pan_velocity = (float(config.speed * np.sin(angle)), float(config.speed * np.cos(angle)))
    background = background_frames(config, rng, pan_velocity)
    video = render(objects, config, background=background)["video"]          # (3, T, H, W)
    if kind == "text_overlay":
        bar, glyphs = _text_bar(rng, size)
        video[:, :, torch.from_numpy(bar)] = TEXT_BAR_VALUE
        video[:, :, torch.from_numpy(glyphs)] = TEXT_VALUE
    elif kind == "low_quality":
        video = _degrade(video, int(rng.integers(2**31)))
    return video, caption_for(objects), {o.colour for o in objects}


def make_footage(seed: int, n_clips: int | None = None, clip_frames: int = 16, size: int = 32, fade_frames: int = 4,
                 kinds: tuple[str, ...] | None = None) -> Footage:
    """Raw footage of ``n_clips`` labelled toy-world clips joined by random cuts and fades.

    ``kinds`` fixes the kind of every clip (a tuple of names from KINDS, one per clip); by default they
    are drawn at random. ``n_clips`` defaults to len(kinds), or 4. The same arguments always give the
    same footage.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if n_clips is None:
        n_clips = 4 if kinds is None else len(kinds)
    check_positive_int(n_clips, "n_clips")
    check_positive_int(size, "size")
    if check_positive_int(clip_frames, "clip_frames") < 2:
        raise ValueError(f"clip_frames must be >= 2 so that clips can move, got {clip_frames}")
    if isinstance(fade_frames, bool) or not isinstance(fade_frames, int) or fade_frames < 0:
        raise ValueError(f"fade_frames must be an int >= 0, got {fade_frames!r}")
    rng = np.random.default_rng(seed)
    if kinds is None:
        kinds = tuple(rng.choice(KINDS, size=n_clips, p=KIND_PROBABILITIES).tolist())
    kinds = tuple(kinds)
    if len(kinds) != n_clips or any(k not in KINDS for k in kinds):
        raise ValueError(f"kinds must be a tuple of n_clips={n_clips} names from {KINDS}, got {kinds}")

    frames: list[Tensor] = []        # (3, t, H, W) pieces, joined at the end
    length = 0
    clips, transitions = [], []
    previous_colours: set[str] = set()
    for kind in kinds:
        video, caption, previous_colours = _make_clip(rng, kind, clip_frames, size, previous_colours)
        if clips:
            fade = fade_frames > 0 and rng.random() < 0.5
            if fade:
                last, first = frames[-1][:, -1:], video[:, :1]
                w = torch.arange(1, fade_frames + 1, dtype=torch.float32)[None, :, None, None] / (fade_frames + 1)
                frames.append((1 - w) * last + w * first)
                transitions.append((length, "fade", fade_frames))
                length += fade_frames
            else:
                transitions.append((length, "cut", 0))
        frames.append(video)
        clips.append(FootageClip(start=length, end=length + clip_frames, kind=kind, caption=caption))
        length += clip_frames
    return Footage(video=torch.cat(frames, dim=1), clips=clips, transitions=transitions)
