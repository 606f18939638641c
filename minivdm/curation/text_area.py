"""Text area: how much of a frame is covered by rendered text (captions, subtitles, logos).

Stable Video Diffusion (Blattmann et al. 2023, "Stable Video Diffusion: Scaling Latent Video Diffusion
Models to Large Datasets", arXiv:2311.15127, Sec. 3.1 and App. C) runs an OCR text detector (CRAFT) on
the first, middle and last frame of every clip and drops the clips whose text covers too much of the
frame: a model trained on them learns to paint subtitles and watermarks.

This module estimates the same quantity without a learned detector, with the classical pipeline of
document analysis. Rendered text is *thin* (strokes a few pixels wide), *high contrast* (it is meant to
be read over any picture) and *laid out in horizontal lines* of many small marks side by side. Scene
content is mostly the opposite: flat or smooth regions whose outlines cross a row once or twice.

For one luminance image Y (values in [-1, 1]):

    1. stroke response   top-hat    W = Y - open(Y),   open(Y)  = dilate(erode(Y))   bright strokes
                         black-hat  B = close(Y) - Y,  close(Y) = erode(dilate(Y))   dark strokes
                         with a 3x3 square: a mark narrower than the square vanishes under open / close
                         and comes back in W or B with its full contrast, while flat regions, the
                         inside of shapes and smooth texture give ~0.
    2. binarise          S = W > STROKE_CONTRAST, then separately S = B > STROKE_CONTRAST: a line of text
                         is either light on dark or dark on light, never both.
    3. merge             M = closing of S with a 1 x (LINE_GAP + 1) row (horizontal run-length
                         smoothing): the gaps between letters and words fill, a line becomes one blob,
                         while lines above each other stay apart.
    4. components        label propagation on M: every pixel starts with its own index and repeatedly
                         takes the largest label among its 3x3 neighbours in M, until nothing changes.
    5. line box          the component's box, trimmed to the rows holding >= ROW_RUN_FRACTION of the
                         busiest row's runs of S (a horizontal projection profile), so an object edge
                         that touches the line does not stretch it.
    6. text-like?        keep the box (height h, width w) when
                             MIN_LINE_HEIGHT <= h <= MAX_LINE_HEIGHT
                             w / h >= MIN_ASPECT                               a line, not a blob
                             mean of W (or B) over S >= MIN_LINE_CONTRAST      made to be read: strokes
                                                                  far above the threshold, where noise
                                                                  only just crosses it
                             mean runs of S per row >= MIN_RUNS_PER_ROW        several marks side by side
                             mean runs per row / (w / h) >= MIN_RUNS_PER_HEIGHT
                                                                  ~1 mark or more per line height of
                                                                  width; an object's outline gives 1-2
                                                                  runs per row whatever its width
    7. one polarity      where a bright and a dark line overlap, the other polarity is only the narrow
                         gaps between the letters: keep the one with more runs per row.
    8. margin            grow the box by LINE_MARGIN * h on every side: a line of text owns its leading
                         (the space above and below the letters), as a detector's word box does.

Scale: all sizes above are in pixels of one pyramid level, tuned for ~32-pixel frames. Larger text is thin at a coarser octave,
so steps 1-8 run on the pyramid Y, avgpool_2(Y), avgpool_4(Y), ... (while the short side stays
>= MIN_LEVEL_SIZE), the boxes are scaled back, and a box lying mostly inside a larger one is dropped.
Footage upscaled by 2^k (nearest) is therefore seen exactly as the original at octave k.

    text_area(frame)     = |union of boxes| / (H W)
    clip_text_area(clip) = max of text_area over the first, middle and last frames
    a clip is dropped when clip_text_area(clip) > TEXT_AREA_THRESHOLD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from minivdm.toyworld.footage import TEXT_BAR_VALUE, TEXT_VALUE, make_footage
from minivdm.validation import check_positive_int, check_tensor

# Contrast of a stroke against its surroundings, in [-1, 1] units. Toy glyphs have 1.9 and white PIL
# text on the toy background ~1.7; the faint background texture stays below 0.1 and low-quality noise
# (sigma 0.15 per channel, ~0.1 in luma) practically never reaches 0.5.
STROKE_CONTRAST = 0.5
STROKE_KERNEL = 3                       # the top-hat square: strokes up to 2 px wide at a level
LINE_GAP = 8                            # px (even): wider gaps between marks split a line
ROW_RUN_FRACTION = 0.3
# Line shape. On the tuning footage (seeds 0..199) the toy caption lines have aspect >= 4.5, contrast
# ~1.8-1.9, >= 3.8 runs per row and >= 0.76 runs per line height; PIL words (sizes 8-28 px on 128 px
# frames) reach down to aspect 1.6, 2 runs per row, 0.61 per height, and the best line of a frame has
# contrast >= 0.9. The scene components that come closest (object corners, slivers between overlapping
# shapes) have <= 1.75 runs per row; lines made of pure noise (sigma 0.4-0.7) have contrast <= 0.76.
# (A fill-ratio rule, common in classical detectors, changed nothing here once these hold.)
MIN_LINE_HEIGHT, MAX_LINE_HEIGHT = 4, 12   # px at a level; octaves overlap (4-12, 8-24, 16-48, ...)
MIN_ASPECT = 1.5
MIN_LINE_CONTRAST = 0.8
MIN_RUNS_PER_ROW = 2.0
MIN_RUNS_PER_HEIGHT = 0.6
LINE_MARGIN = 0.2                       # of the line height, on every side
MIN_LEVEL_SIZE = 24                     # px, short side of the coarsest pyramid level
# Tuned on footage seeds 0..199 (size 32): the 208 clips with a caption bar measure 0.16-0.20 (the bar
# is 0.22), the 992 others exactly 0. The threshold sits well below the bar, so a caption is dropped
# while a single small word (~0.01 of a 128 px frame) is not: SVD removes clips with *much* text.
TEXT_AREA_THRESHOLD = 0.05

LUMA_WEIGHTS = (0.299, 0.587, 0.114)    # ITU-R BT.601

Box = tuple[int, int, int, int]         # (top, left, bottom, right), bottom / right exclusive


def _check_frame(frame, name: str = "frame") -> Tensor:
    check_tensor(frame, name, ndim=3, layout="(3, H, W) in [-1, 1]", floating=True)
    if frame.shape[0] != 3 or min(frame.shape[-2:]) < 8:
        raise ValueError(f"{name} must be (3, H, W) in [-1, 1] with H, W >= 8, got {tuple(frame.shape)}")
    if frame.min() < -1.01 or frame.max() > 1.01:
        raise ValueError(f"{name} values must be in [-1, 1], got [{float(frame.min()):.3g}, "
                         f"{float(frame.max()):.3g}] (convert uint8 with x / 127.5 - 1)")
    return frame


# ----------------------------------------------------------------------------- morphology

def luminance(frame: Tensor) -> Tensor:
    """(3, H, W) -> (H, W) luma (ITU-R BT.601 weights), in the frame's units."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=frame.dtype, device=frame.device)
    return torch.einsum("chw,c->hw", frame, weights)


def _dilate(image: Tensor, height: int, width: int) -> Tensor:
    """Max over the (height, width) window centred on each pixel (odd sizes); (H, W) -> (H, W).

    The border is replicated, so the frame's edge itself is not a contrast.
    """
    batched = rearrange(image, "h w -> 1 1 h w")
    padded = F.pad(batched, (width // 2, width // 2, height // 2, height // 2), mode="replicate")
    return rearrange(F.max_pool2d(padded, (height, width), stride=1), "1 1 h w -> h w")


def _erode(image: Tensor, height: int, width: int) -> Tensor:
    return -_dilate(-image, height, width)


def stroke_responses(luma: Tensor) -> tuple[Tensor, Tensor]:
    """(top-hat, black-hat) of an (H, W) luma image: bright and dark marks thinner than the kernel."""
    k = STROKE_KERNEL
    opened = _dilate(_erode(luma, k, k), k, k)
    closed = _erode(_dilate(luma, k, k), k, k)
    return luma - opened, closed - luma


def _close(mask: Tensor, height: int, width: int) -> Tensor:
    """Binary closing (dilate, then erode) with a (height, width) window; (H, W) bool -> (H, W) bool.

    Done on a canvas padded with background, so a line near the border is not stretched into it.
    """
    pad_h, pad_w = height // 2, width // 2
    canvas = F.pad(mask.float(), (pad_w, pad_w, pad_h, pad_h))
    closed = _erode(_dilate(canvas, height, width), height, width)
    return closed[pad_h: pad_h + mask.shape[0], pad_w: pad_w + mask.shape[1]] > 0.5


def merge_into_lines(strokes: Tensor) -> Tensor:
    """Horizontal run-length smoothing of an (H, W) bool stroke map: gaps up to LINE_GAP px are filled."""
    return _close(strokes, 1, LINE_GAP + 1)


def connected_components(mask: Tensor) -> Tensor:
    """(H, W) bool -> (H, W) long labels (8-connectivity), 0 on the background, by label propagation.

    Every foreground pixel starts with a distinct label (its flat index + 1) and repeatedly takes the
    largest label among its 3x3 neighbours that are foreground. When nothing changes any more, each
    component carries the label of its largest pixel index. (Each pass moves a label one pixel, so
    this takes about as many passes as the longest path inside a component: cheap at these sizes.)
    """
    height, width = mask.shape
    # float64 holds every index exactly (max_pool2d has no integer kernel).
    index = torch.arange(1, height * width + 1, dtype=torch.float64)
    index = rearrange(index, "(h w) -> h w", h=height, w=width)
    labels = torch.where(mask, index, torch.zeros_like(index))
    while True:
        spread = _dilate(labels, 3, 3) * mask
        if torch.equal(spread, labels):
            return labels.long()
        labels = spread


def _component_boxes(labels: Tensor) -> list[Box]:
    boxes = []
    for label in labels.unique():
        if label == 0:
            continue
        rows, cols = torch.nonzero(labels == label, as_tuple=True)
        boxes.append((int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
    return boxes


# ----------------------------------------------------------------------------- is it a line of text?

def _runs_per_row(strokes: Tensor) -> Tensor:
    """(h, w) bool -> (h,) number of horizontal runs of stroke pixels (0 -> 1 changes) in each row."""
    inside = strokes.long()
    return (inside[:, 1:] > inside[:, :-1]).sum(1) + inside[:, 0]


def _trim_to_line(strokes: Tensor, box: Box) -> Box:
    """Keep the rows from the first to the last holding >= ROW_RUN_FRACTION of the busiest row's runs:
    an object edge touching a line of text adds rows with one or two runs, the letters' rows have many."""
    top, left, bottom, right = box
    runs = _runs_per_row(strokes[top:bottom, left:right])
    busy = torch.nonzero(runs >= ROW_RUN_FRACTION * runs.max()).flatten()
    return (top + int(busy[0]), left, top + int(busy[-1]) + 1, right)


def line_features(response: Tensor, box: Box) -> dict:
    """Shape and stroke statistics of a candidate box over an (H, W) stroke response (top- or black-hat)."""
    top, left, bottom, right = box
    window = response[top:bottom, left:right]
    strokes = window > STROKE_CONTRAST
    height, width = bottom - top, right - left
    runs_per_row = float(_runs_per_row(strokes).float().mean())
    return {
        "height": height,
        "aspect": width / height,
        "contrast": float(window[strokes].mean()),
        "runs_per_row": runs_per_row,
        "runs_per_height": runs_per_row / (width / height),
    }


def looks_like_text(features: dict) -> bool:
    """Step 6 of the module docstring: the line rules on the features of line_features."""
    return (MIN_LINE_HEIGHT <= features["height"] <= MAX_LINE_HEIGHT
            and features["aspect"] >= MIN_ASPECT
            and features["contrast"] >= MIN_LINE_CONTRAST
            and features["runs_per_row"] >= MIN_RUNS_PER_ROW
            and features["runs_per_height"] >= MIN_RUNS_PER_HEIGHT)


def candidate_lines(luma: Tensor) -> list[tuple[Box, dict]]:
    """Every merged component of one (H, W) luma level, trimmed to its line, with its features.

    Boxes are in this level's pixels; features carry the polarity ("bright" or "dark" strokes).
    """
    candidates = []
    for polarity, response in zip(("bright", "dark"), stroke_responses(luma)):
        strokes = response > STROKE_CONTRAST
        labels = connected_components(merge_into_lines(strokes))
        for box in _component_boxes(labels):
            box = _trim_to_line(strokes, box)
            candidates.append((box, {"polarity": polarity, **line_features(response, box)}))
    return candidates


# ----------------------------------------------------------------------------- boxes over the pyramid

def _grow(box: Box, margin: int, height: int, width: int) -> Box:
    top, left, bottom, right = box
    return (max(top - margin, 0), max(left - margin, 0), min(bottom + margin, height), min(right + margin, width))


def _box_area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _overlap(box: Box, other: Box) -> int:
    return (max(0, min(box[2], other[2]) - max(box[0], other[0]))
            * max(0, min(box[3], other[3]) - max(box[1], other[1])))


def _one_polarity_per_line(lines: list[tuple[Box, dict]]) -> list[tuple[Box, dict]]:
    """A line of text is light on dark or dark on light. Where a bright and a dark line overlap (by half
    the smaller box), the other polarity is the narrow gaps between the letters, plus whatever thin
    structure touches the line: keep the one with more runs per row, the letters."""
    kept = []
    for box, features in lines:
        rivals = [other_features for other, other_features in lines
                  if other_features["polarity"] != features["polarity"]
                  and _overlap(box, other) >= 0.5 * min(_box_area(box), _box_area(other))]
        if all(features["runs_per_row"] >= rival["runs_per_row"] for rival in rivals):
            kept.append((box, features))
    return kept


def _drop_nested(boxes: list[Box]) -> list[Box]:
    """Drop a box when >= 80 % of it lies inside a larger kept box: the same line seen at two octaves."""
    kept: list[Box] = []
    for box in sorted(set(boxes), key=_box_area, reverse=True):
        if not any(_overlap(box, other) >= 0.8 * _box_area(box) for other in kept):
            kept.append(box)
    return sorted(kept)


def text_boxes(frame: Tensor) -> list[Box]:
    """Boxes (top, left, bottom, right) of the text lines of a (3, H, W) frame in [-1, 1], in pixels,
    bottom / right exclusive, sorted."""
    frame = _check_frame(frame)
    height, width = frame.shape[-2:]
    luma = luminance(frame.detach().float().cpu())
    boxes, scale = [], 1
    while True:
        lines = [(box, features) for box, features in candidate_lines(luma) if looks_like_text(features)]
        for box, features in _one_polarity_per_line(lines):
            box = _grow(box, round(LINE_MARGIN * features["height"]), *luma.shape)
            top, left, bottom, right = (value * scale for value in box)
            boxes.append((top, left, min(bottom, height), min(right, width)))
        if min(luma.shape) // 2 < MIN_LEVEL_SIZE:
            break
        luma = rearrange(F.avg_pool2d(rearrange(luma, "h w -> 1 1 h w"), 2), "1 1 h w -> h w")
        scale *= 2
    return _drop_nested(boxes)


def text_mask(frame: Tensor) -> Tensor:
    """(H, W) bool: the union of text_boxes(frame)."""
    frame = _check_frame(frame)
    mask = torch.zeros(frame.shape[-2:], dtype=torch.bool)
    for top, left, bottom, right in text_boxes(frame):
        mask[top:bottom, left:right] = True
    return mask


def text_area(frame: Tensor) -> float:
    """Fraction of a (3, H, W) frame covered by the union of its text boxes, in [0, 1]."""
    return float(text_mask(frame).float().mean())


def clip_text_area(clip: Tensor) -> float:
    """The largest text_area over the first, middle and last frames of a (C, T, H, W) clip (as in SVD)."""
    check_tensor(clip, "clip", ndim=4, layout="(C, T, H, W) with C = 3", floating=True)
    if clip.shape[0] != 3 or clip.shape[1] < 1:
        raise ValueError(f"clip must be (C, T, H, W) with C = 3 and T >= 1, got {tuple(clip.shape)}")
    frames = clip.shape[1]
    return max(text_area(_check_frame(clip[:, t], "clip[:, t]")) for t in sorted({0, frames // 2, frames - 1}))


# ----------------------------------------------------------------------------- benchmark

def benchmark_footage_text(seeds=range(1000, 1050), *, size: int = 32, upscale: int = 1) -> dict:
    """Precision / recall of "has text" (clip_text_area > TEXT_AREA_THRESHOLD) against kind ==
    "text_overlay" over every true clip of make_footage(seed, n_clips=6, clip_frames=16, size=size,
    fade_frames=4), and the mean absolute error of the estimated area against the true bar area.

    ``upscale`` > 1 enlarges the footage (nearest) before measuring, to check scale independence.
    The default seeds are the held-out set; tune on seeds 0..199 only.
    """
    check_positive_int(size, "size")
    check_positive_int(upscale, "upscale")
    seeds = list(seeds)
    if not seeds or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise ValueError(f"seeds must be a non-empty iterable of ints, got {seeds!r}")
    true_positive = false_positive = false_negative = true_negative = 0
    area_errors, false_positive_kinds = [], []
    for seed in seeds:
        footage = make_footage(seed, n_clips=6, clip_frames=16, size=size, fade_frames=4)
        for footage_clip in footage.clips:
            clip = footage.video[:, footage_clip.start: footage_clip.end]
            if upscale > 1:
                clip = clip.repeat_interleave(upscale, dim=-2).repeat_interleave(upscale, dim=-1)
            area = clip_text_area(clip)
            predicted, actual = area > TEXT_AREA_THRESHOLD, footage_clip.kind == "text_overlay"
            true_positive += predicted and actual
            false_positive += predicted and not actual
            false_negative += actual and not predicted
            true_negative += not (predicted or actual)
            if predicted and not actual:
                false_positive_kinds.append(footage_clip.kind)
            if actual:
                # The bar is the set of pixels that hold the bar or glyph value in every frame.
                bar = ((clip == TEXT_BAR_VALUE) | (clip == TEXT_VALUE)).all(dim=0).all(dim=0)
                area_errors.append(abs(area - float(bar.float().mean())))
    return {
        "precision": true_positive / max(true_positive + false_positive, 1),
        "recall": true_positive / max(true_positive + false_negative, 1),
        "area_mae": sum(area_errors) / max(len(area_errors), 1),
        "threshold": TEXT_AREA_THRESHOLD,
        "clips": true_positive + false_positive + false_negative + true_negative,
        "text_clips": true_positive + false_negative,
        "true_positive": true_positive, "false_positive": false_positive,
        "false_negative": false_negative, "true_negative": true_negative,
        "false_positive_kinds": false_positive_kinds,
    }
