"""Raw footage is labelled truthfully: clips, kinds, cuts and fades are where the labels say."""

import pytest
import torch
from einops import rearrange

from minivdm.toyworld import BACKGROUND, PALETTE
from minivdm.toyworld.footage import KINDS, TEXT_VALUE, make_footage
from minivdm.toyworld.oracle import parse_caption

ALL_KINDS = ("normal", "static", "text_overlay", "low_quality")


def changed_pixels(video):
    """(T-1,) fraction of pixels that change by more than 0.5 in some channel between frames t and t+1."""
    return ((video[:, 1:] - video[:, :-1]).abs().amax(dim=0) > 0.5).float().mean((-1, -2))


def test_layout_and_labels_tile_the_video():
    for seed in range(10):
        footage = make_footage(seed, n_clips=5, clip_frames=12, size=32, fade_frames=3)
        video = footage.video
        assert video.ndim == 4 and video.shape[0] == 3 and video.shape[-2:] == (32, 32)
        assert video.dtype == torch.float32 and video.min() >= -1 and video.max() <= 1
        assert len(footage.clips) == 5 and len(footage.transitions) == 4
        # Clips and transitions follow each other without gaps: clip, transition, clip, ...
        position = 0
        for i, clip in enumerate(footage.clips):
            if i > 0:
                first, kind, length = footage.transitions[i - 1]
                assert first == position and kind in ("cut", "fade")
                assert length == (3 if kind == "fade" else 0)
                position += length
            assert (clip.start, clip.end) == (position, position + 12) and clip.kind in KINDS
            parse_caption(clip.caption)
            position = clip.end
        assert position == video.shape[1]


def test_same_seed_same_footage():
    a, b, c = make_footage(5), make_footage(5), make_footage(6)
    assert torch.equal(a.video, b.video) and a.clips == b.clips and a.transitions == b.transitions
    assert not torch.equal(a.video[:, :16], c.video[:, :16])


def test_random_kinds_and_transitions_all_occur():
    footages = [make_footage(seed) for seed in range(20)]
    kinds = {clip.kind for footage in footages for clip in footage.clips}
    transitions = {kind for footage in footages for _, kind, _ in footage.transitions}
    assert kinds == set(ALL_KINDS) and transitions == {"cut", "fade"}


def test_static_clips_do_not_change_and_others_do():
    footage = make_footage(0, kinds=ALL_KINDS * 2)
    for clip in footage.clips:
        frames = footage.video[:, clip.start: clip.end]
        difference = (frames[:, 1:] - frames[:, :-1]).abs().amax()
        if clip.kind == "static":
            assert difference == 0 and "moving" not in clip.caption
        else:
            assert difference > 0.5, clip.kind


def test_cuts_are_where_frame_difference_spikes():
    for seed in range(20):
        footage = make_footage(seed)
        change = changed_pixels(footage.video)      # change[t] compares frames t and t + 1
        for first, kind, _ in footage.transitions:
            if kind != "cut":
                continue
            neighbours = [c for c in footage.clips if first in (c.start, c.end)]
            within = max(change[c.start: c.end - 1].max() for c in neighbours)
            assert change[first - 1] > 1.5 * within, (seed, first)


def test_fade_frames_are_convex_mixes_of_the_clips_they_join():
    footage = make_footage(1, n_clips=6, fade_frames=4)
    fades = [t for t in footage.transitions if t[1] == "fade"]
    assert fades
    for first, _, length in fades:
        last, following = footage.video[:, first - 1], footage.video[:, first + length]
        weights = []
        for k in range(length):
            w = (k + 1) / (length + 1)
            assert torch.allclose(footage.video[:, first + k], (1 - w) * last + w * following, atol=1e-6)
            weights.append(w)
        assert weights == sorted(weights) and 0 < weights[0] and weights[-1] < 1


def test_text_overlay_is_a_static_bar_of_white_glyphs():
    footage = make_footage(2, kinds=("text_overlay", "normal"))
    text, normal = (footage.video[:, c.start: c.end] for c in footage.clips)
    glyphs = (text == TEXT_VALUE).all(dim=0)                       # (T, H, W)
    assert glyphs.sum() > 0 and (glyphs == glyphs[0]).all(), "text stays put over the clip"
    rows = glyphs[0].any(dim=1).nonzero().flatten()
    assert rows.max() - rows.min() < 32 // 4, "a bar over part of the frame"
    assert not (normal == TEXT_VALUE).all(dim=0).any(), "no white in a clean toy-world clip"


def test_low_quality_clips_are_noisy_and_clean_clips_are_not():
    footage = make_footage(4, kinds=("low_quality", "normal"))
    references = torch.tensor(list(PALETTE.values()) + [BACKGROUND]) * 2 - 1          # [-1, 1] units
    for clip in footage.clips:
        pixels = rearrange(footage.video[:, clip.start: clip.end], "c t h w -> (t h w) c")
        off_palette = (torch.cdist(pixels, references).amin(dim=1) > 0.2).float().mean()
        if clip.kind == "low_quality":
            assert off_palette > 0.3
        else:
            assert off_palette == 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="kinds must be a tuple of n_clips=2"):
        make_footage(0, n_clips=2, kinds=("normal",))
    with pytest.raises(ValueError, match="kinds"):
        make_footage(0, kinds=("blurry",))
    with pytest.raises(ValueError, match="clip_frames"):
        make_footage(0, clip_frames=1)
    with pytest.raises(ValueError, match="fade_frames"):
        make_footage(0, fade_frames=-1)
    with pytest.raises(TypeError, match="seed"):
        make_footage("0")
