"""The oracle: reads any video and says which toy-world objects it sees, and how well it matches a prompt.

It plays the part that FVD and CLIP scores play in papers, but exactly and on a CPU, because the toy
world is simple enough to be read back pixel by pixel:

1. **Colour.** Every pixel is labelled with the nearest of the six palette colours or the background,
   or "unknown" when it is far from all of them (L2 distance in RGB, [0, 1] units). Isolated pixels
   (no 4-neighbour with the same label) are dropped, so noise does not make speckle objects.
2. **Objects.** Each palette colour that covers at least 1% of a frame is one seen object (the toy
   world never draws two objects in the same colour).
3. **Shape.** Read on a soft mask, so anti-aliased or blurred edges do not change the answer: each
   pixel near the object (within 2 px of its labelled pixels, and not labelled as another object)
   covers it by the fraction alpha in [0, 1] that puts the pixel's colour on the line from the
   background to the object's colour. From the row sums R(y) and column sums C(x) of alpha, and the
   area A = sum(alpha): a triangle (apex up) has most of its area low down, a row profile skewed
   upwards (skewness ~ -0.57, circles and squares ~ 0); otherwise the fill ratio A / (max R * max C)
   tells a square (1) from a circle (pi/4 ~ 0.79), with R and C first averaged over 3 neighbouring
   rows or columns so that noise does not inflate their maxima. Soft sums are unchanged by blur (it
   moves alpha around without creating or losing any), where a hard mask loses a square's corners.
   The shape is read in every frame where the object is fully in view (it does not touch the frame
   border, no other object comes within 3 px of it, and it keeps at least half its largest area);
   the majority reading is the object's shape (ties go to the largest such frame), and
   ``shape_agreement`` is the fraction of those frames that agree with it. With no such frame, the
   frame where it is largest is read.
4. **Motion.** A least-squares line through the centroid trajectory; below 0.5 px/frame (at size 32)
   it is "still", otherwise the dominant axis gives left/right/up/down (y grows downwards). A single
   frame (T = 1) has no motion: it reads as "unknown" and scores skip it.
5. **Temporal consistency.** An object is consistent when it is seen in every frame, its area varies
   by less than 40% (the pixel grid alone moves a small triangle's area by up to ~35%), its
   per-frame colour stays within 0.1 of its mean, its centroid stays within 2 px of a straight
   line at constant speed (shuffled frames break this rule), and every frame where it is fully in
   view reads the same shape (a circle turning into a square breaks this one).

Inputs must hold values in [-1, 1], the toy world's range; values beyond it are clamped before reading.
Refused, since they would silently read as nothing: non-finite values; values beyond -2 or 2 (frames in
[0, 255]; unclamped model samples overshoot far less, 0.4 measured); and videos in [0, 1], recognised by
having no negative value while at least a quarter of their pixels sit at the background grey
(0.15, 0.15, 0.15) taken at face value. A real [-1, 1] video with no negative value cannot show any palette
colour or the background (each has a channel at 0.15 or below in [0, 1] units, -0.7 in [-1, 1]), so this
refusal never costs a readable video.

Scores compare what is seen with what was prompted; colours, errors and flicker are in RGB [0, 1].
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from minivdm.toyworld.world import BACKGROUND, MOTIONS, PALETTE, SHAPES, ToyBatch, ToyObject
from minivdm.validation import VIDEO_LAYOUT, check_video

COLOURS = tuple(PALETTE)
# Labels 0..5 are the palette colours in PALETTE order, 6 is the background, -1 unknown.
BACKGROUND_LABEL = len(COLOURS)
UNKNOWN_LABEL = -1
# Half the smallest distance between two palette colours (0.65): beyond it a pixel is not trusted.
MAX_COLOUR_DISTANCE = 0.33
MIN_AREA_FRACTION = 0.01          # of the frame, for a colour to count as an object in that frame
COVERAGE_REACH = 2                # px around an object's labelled pixels where soft coverage is summed
TRIANGLE_MAX_SKEW = -0.3          # skewness of the row profile: triangle ~-0.57, circle and square ~0
SQUARE_MIN_FILL = 0.94            # A / (max R * max C): square 1, circle pi/4 (<= 0.90 drawn at radius 5)
OCCLUSION_REACH = 3               # px: a frame with another object this close may hide part of it
FULL_VIEW_MIN_AREA = 0.5          # of the object's largest area, for a frame to count as fully in view
MIN_SHAPE_AGREEMENT = 1.0         # consistency: fraction of fully visible frames reading the majority shape
STILL_SPEED = 0.5                 # px/frame at size 32; scaled with the frame width
MAX_AREA_CHANGE = 0.4             # consistency: (max - min) / max area over frames
MAX_COLOUR_DRIFT = 0.1            # consistency: per-frame mean colour vs the object's mean colour
MAX_PATH_RESIDUAL = 2.0           # consistency: px (at size 32) from a constant-velocity line
READ_CHUNK = 64                   # videos read at a time
# Unclamped model samples overshoot [-1, 1] by up to ~0.4 (reconstruction-guided extension, w_r = 5);
# frames in [0, 255] go far beyond.
RANGE_TOLERANCE = 1.0
# A video with no value below 0 and this much of it within GREY_MATCH_DISTANCE of BACKGROUND is a [0, 1]
# toy-world video: at least half of every toy-world frame is background.
GREY_MATCH_DISTANCE = 0.1
MIN_GREY_FRACTION = 0.25


@dataclass
class SeenObject:
    colour: str                          # palette name
    shape: str                           # one of SHAPES
    motion: str                          # one of MOTIONS, or "unknown" for a single frame
    trajectory: Tensor                   # (T, 2) (y, x) centroid; nan in frames where it is not seen
    mean_rgb: tuple[float, float, float]  # measured mean colour of its pixels, [0, 1]
    colour_error: float                  # L2 distance of mean_rgb to PALETTE[colour]
    area: Tensor                         # (T,) pixel count per frame
    fill_ratio: float                    # soft area / (widest row * tallest column), largest full view
    consistent: bool                     # identity, size, colour, path and shape stable over the frames
    shape_agreement: float = 1.0         # fraction of fully visible frames whose shape reading is ``shape``

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)


def _as_video_batch(video) -> Tensor:
    if isinstance(video, Tensor) and video.ndim == 4 and video.shape[0] == 3:
        video = video[None]   # one video (C, T, H, W)
    video = check_video(video)
    if video.shape[1] != 3:
        raise ValueError(f"video must be RGB {VIDEO_LAYOUT} with C = 3 (or one video (3, T, H, W)), "
                         f"got shape {tuple(video.shape)}")
    _check_value_range(video)
    return video


def _check_value_range(video: Tensor) -> None:
    """Refuse videos that are not in [-1, 1]: read as [-1, 1] they would silently show nothing."""
    values = video.detach()
    if not torch.isfinite(values).all():
        raise ValueError("video must hold finite values in [-1, 1], got nan or inf")
    if values.numel() == 0:
        return
    low, high = float(values.min()), float(values.max())
    how = ("convert uint8 frames with video / 127.5 - 1, frames in [0, 1] with video * 2 - 1, "
           "and clamp model samples with video.clamp(-1, 1)")
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(f"video must hold values in [-1, 1] (got min {low:.4g}, max {high:.4g}): {how}")
    if low >= 0:
        # No negative value at all: a [0, 1] video shows the background grey at its face value.
        rgb = rearrange(values.float(), "b c t h w -> (b t h w) c")
        at_grey = (rgb - torch.tensor(BACKGROUND)).norm(dim=-1) <= GREY_MATCH_DISTANCE
        if float(at_grey.float().mean()) >= MIN_GREY_FRACTION:
            raise ValueError(f"video must hold values in [-1, 1] (got min {low:.4g}, max {high:.4g}, and "
                             f"{float(at_grey.float().mean()):.0%} of pixels at the background grey "
                             f"{BACKGROUND} of [0, 1] frames): {how}")


def label_pixels(rgb: Tensor) -> Tensor:
    """(B, 3, T, H, W) colours in [0, 1] -> (B, T, H, W) long labels: palette index, 6 = background, -1."""
    references = torch.tensor(list(PALETTE.values()) + [BACKGROUND], dtype=rgb.dtype)   # (7, 3)
    pixels = rearrange(rgb, "b c t h w -> b t h w c")
    # |p - r|^2 = |p|^2 - 2 p.r + |r|^2: one matrix product instead of a (..., 7, 3) difference tensor.
    squared = (pixels**2).sum(-1, keepdim=True) - 2 * pixels @ references.T + (references**2).sum(-1)
    nearest, labels = squared.min(dim=-1)                                                # (B, T, H, W)
    labels[nearest > MAX_COLOUR_DISTANCE**2] = UNKNOWN_LABEL
    # Drop isolated pixels: keep a label only if a 4-neighbour carries the same one.
    padded = torch.nn.functional.pad(labels, (1, 1, 1, 1), value=-2)
    centre = padded[..., 1:-1, 1:-1]
    has_twin = ((padded[..., :-2, 1:-1] == centre) | (padded[..., 2:, 1:-1] == centre)
                | (padded[..., 1:-1, :-2] == centre) | (padded[..., 1:-1, 2:] == centre))
    return torch.where(has_twin, labels, torch.full_like(labels, UNKNOWN_LABEL))


def _line_fit(trajectory: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares constant-velocity fit of (..., T, 2) positions over present frames.

    Returns velocity (..., 2) in px/frame and the largest distance (...,) of a present point to the line.
    """
    t = torch.arange(trajectory.shape[-2], dtype=trajectory.dtype)
    w = present.to(trajectory.dtype)[..., None]                        # (..., T, 1)
    count = w.sum(-2).clamp(min=1)
    pos = torch.nan_to_num(trajectory)
    t_mean = (w[..., 0] * t).sum(-1, keepdim=True) / count             # (..., 1)
    p_mean = (w * pos).sum(-2) / count                                  # (..., 2)
    dt = (t - t_mean)[..., None] * w                                    # (..., T, 1)
    velocity = (dt * (pos - p_mean[..., None, :])).sum(-2) / (dt**2).sum(-2).clamp(min=1e-9)
    fitted = p_mean[..., None, :] + (t - t_mean)[..., None] * velocity[..., None, :]
    residual = ((pos - fitted).norm(dim=-1) * w[..., 0]).amax(-1)
    return velocity, residual


def _motion_name(velocity: Tensor, still_speed: float) -> str:
    vy, vx = velocity.tolist()
    if (vy**2 + vx**2) ** 0.5 < still_speed:
        return "still"
    if abs(vx) >= abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"


def soft_coverage(rgb: Tensor, labels: Tensor) -> Tensor:
    """(B, 3, T, H, W) colours in [0, 1] and their labels -> (B, K, T, H, W) coverage alpha in [0, 1] of each
    palette colour: alpha_k = <p - background, c_k - background> / |c_k - background|^2, clamped, kept within
    COVERAGE_REACH px of the pixels labelled k and zero on pixels labelled as another palette colour."""
    background = torch.tensor(BACKGROUND, dtype=rgb.dtype)
    towards = torch.tensor(list(PALETTE.values()), dtype=rgb.dtype) - background        # (K, 3)
    offset = rearrange(rgb, "b c t h w -> b t h w c") - background
    alpha = (offset @ towards.T / (towards**2).sum(-1)).clamp(0, 1)                     # (B, T, H, W, K)
    alpha = rearrange(alpha, "b t h w k -> b k t h w")
    colours = torch.arange(len(COLOURS))[None, :, None, None, None]
    own = labels[:, None] == colours                                                    # (B, K, T, H, W)
    other_object = (labels[:, None] >= 0) & (labels[:, None] < len(COLOURS)) & ~own
    near = _dilate(own, COVERAGE_REACH)
    return alpha * (near & ~other_object)


def _dilate(masks: Tensor, reach: int) -> Tensor:
    """(..., H, W) bool -> pixels within ``reach`` px (chessboard distance) of a True pixel."""
    frames = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    grown = torch.nn.functional.max_pool2d(frames, 2 * reach + 1, stride=1, padding=reach)
    return grown.reshape(masks.shape) > 0


def _mean_of_3(profile: Tensor) -> Tensor:
    """(..., L) -> the mean of each entry and its two neighbours (zero beyond the ends)."""
    padded = torch.nn.functional.pad(profile, (1, 1))
    return (padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]) / 3


def _read_shapes(rgb: Tensor, labels: Tensor, masks: Tensor, area: Tensor,
                 present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Shape index into SHAPES (B, K), agreement of the fully visible frames (B, K) and fill ratio (B, K)."""
    alpha = soft_coverage(rgb, labels)                                           # (B, K, T, H, W)
    rows, cols = alpha.sum(-1), alpha.sum(-2)                                    # (B, K, T, H), (B, K, T, W)
    soft_area = rows.sum(-1)                                                     # (B, K, T)
    # The widest row of a noisy square is wider than the square; a mean over 3 neighbours tames that.
    fill = soft_area / (_mean_of_3(rows).amax(-1) * _mean_of_3(cols).amax(-1)).clamp(min=1e-6)
    # Skewness of the row profile: a triangle (apex up) puts 3/4 of its area in its lower half.
    y = torch.arange(rows.shape[-1], dtype=rows.dtype)
    safe_area = soft_area.clamp(min=1e-6)[..., None]
    y_mean = (rows * y).sum(-1, keepdim=True) / safe_area
    variance = (rows * (y - y_mean) ** 2).sum(-1) / safe_area[..., 0]
    skew = (rows * (y - y_mean) ** 3).sum(-1) / safe_area[..., 0] / variance.clamp(min=1e-6) ** 1.5
    circle, square, triangle = (SHAPES.index(name) for name in ("circle", "square", "triangle"))
    reading = torch.where(skew < TRIANGLE_MAX_SKEW, triangle,
                          torch.where(fill >= SQUARE_MIN_FILL, square, circle))        # (B, K, T)

    # Fully in view: off the border, clear of other objects, and not mostly hidden.
    on_border = (masks[..., 0, :].any(-1) | masks[..., -1, :].any(-1)
                 | masks[..., :, 0].any(-1) | masks[..., :, -1].any(-1))
    colours = torch.arange(len(COLOURS))[None, :, None, None, None]
    other_object = (labels[:, None] >= 0) & (labels[:, None] < len(COLOURS)) & (labels[:, None] != colours)
    touches_other = (_dilate(masks, OCCLUSION_REACH) & other_object).any((-1, -2))
    large = area >= FULL_VIEW_MIN_AREA * area.amax(-1, keepdim=True)
    full_view = present & ~on_border & ~touches_other & large                    # (B, K, T)
    # With no such frame, fall back on the frame where the object is largest.
    full_view = full_view | (~full_view.any(-1, keepdim=True)
                             & (torch.arange(area.shape[-1]) == area.argmax(-1, keepdim=True)))
    largest_full = torch.where(full_view, area, -1).argmax(-1, keepdim=True)      # (B, K, 1)

    votes = torch.nn.functional.one_hot(reading, len(SHAPES)) * full_view[..., None]   # (B, K, T, 3)
    counts = votes.sum(2).float()                                                # (B, K, 3)
    tie_break = torch.nn.functional.one_hot(torch.gather(reading, 2, largest_full)[..., 0], len(SHAPES))
    shape = (counts + 0.5 * tie_break).argmax(-1)                                # (B, K)
    agreement = counts.amax(-1) / counts.sum(-1).clamp(min=1)
    fill_largest = torch.gather(fill, 2, largest_full)[..., 0]
    return shape, agreement, fill_largest


@torch.no_grad()
def read_video(video: Tensor) -> list[list[SeenObject]]:
    """Objects seen in each video of a (B, 3, T, H, W) batch (or one (3, T, H, W) video) in [-1, 1].

    Returns one list per video, objects in palette order. Images are read as one-frame videos: pass an
    image batch as (B, 3, 1, H, W), since a 4-d tensor is taken for a single video.
    """
    video = _as_video_batch(video)
    # Chunks keep the (B, 6 colours, T, H, W) masks small for big batches.
    results = []
    for chunk in video.detach().cpu().split(READ_CHUNK):
        # Overshooting samples are clamped: a clamped colour is never farther from a true colour.
        results.extend(_read_chunk(((chunk.float() + 1) / 2).clamp(0, 1)))
    return results


def caption_video(video: Tensor) -> str:
    """The oracle as a captioner: the toy-world caption of what it sees in one video (3, T, H, W) in [-1, 1],
    e.g. 'a red circle moving left and a blue square standing still' (objects in palette order; '' when
    none is seen). Data curation uses it where a real pipeline runs a captioning model."""
    if not isinstance(video, Tensor) or video.ndim != 4 or video.shape[0] != 3:
        got = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"video must be one (3, T, H, W) video in [-1, 1], got {got}")
    parts = []
    for seen in read_video(video)[0]:
        part = f"a {seen.colour} {seen.shape}"
        if seen.motion == "still":
            part += " standing still"
        elif seen.motion != "unknown":
            part += f" moving {seen.motion}"
        parts.append(part)
    return " and ".join(parts)


def _read_chunk(rgb: Tensor) -> list[list[SeenObject]]:
    batch, _, frames, height, width = rgb.shape
    labels = label_pixels(rgb)                                                   # (B, T, H, W)
    masks = labels[:, None] == torch.arange(len(COLOURS))[None, :, None, None, None]   # (B, K, T, H, W)

    area = masks.sum((-1, -2))                                                   # (B, K, T)
    present = area >= max(3, MIN_AREA_FRACTION * height * width)
    seen = present.any(-1)                                                       # (B, K)
    weights = masks.float()
    safe_area = area.clamp(min=1).float()
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    trajectory = torch.stack([(weights * ys).sum((-1, -2)) / safe_area,
                              (weights * xs).sum((-1, -2)) / safe_area], dim=-1)  # (B, K, T, 2)
    trajectory[~present] = float("nan")

    shape, shape_agreement, fill = _read_shapes(rgb, labels, masks, area, present)

    # Colour: mean over all the object's pixels, and per frame for the drift test.
    pixel_sum = torch.einsum("bcthw,bkthw->bktc", rgb, weights)                  # (B, K, T, 3)
    mean_rgb = pixel_sum.sum(2) / area.sum(-1, keepdim=True).clamp(min=1).float()   # (B, K, 3)
    frame_rgb = pixel_sum / safe_area[..., None]
    drift = ((frame_rgb - mean_rgb[:, :, None]).norm(dim=-1) * present).amax(-1)  # (B, K)
    palette = torch.tensor(list(PALETTE.values()), dtype=torch.float32)
    colour_error = (mean_rgb - palette).norm(dim=-1)                              # (B, K)

    scale = min(height, width) / 32  # objects are sized by the shorter side (the toy world's H)
    velocity, residual = _line_fit(trajectory, present)
    area_change = (area.amax(-1) - area.amin(-1)).float() / area.amax(-1).clamp(min=1).float()
    consistent = (present.all(-1) & (area_change <= MAX_AREA_CHANGE) & (drift <= MAX_COLOUR_DRIFT)
                  & (residual <= MAX_PATH_RESIDUAL * scale) & (shape_agreement >= MIN_SHAPE_AGREEMENT))

    results = []
    for b in range(batch):
        objects = []
        for k in torch.nonzero(seen[b]).flatten().tolist():
            objects.append(SeenObject(
                colour=COLOURS[k],
                shape=SHAPES[int(shape[b, k])],
                motion=_motion_name(velocity[b, k], STILL_SPEED * scale) if frames > 1 else "unknown",
                trajectory=trajectory[b, k].float(),
                mean_rgb=tuple(float(v) for v in mean_rgb[b, k]),
                colour_error=float(colour_error[b, k]),
                area=area[b, k],
                fill_ratio=float(fill[b, k]),
                consistent=bool(consistent[b, k]),
                shape_agreement=float(shape_agreement[b, k]),
            ))
        results.append(objects)
    return results


_OBJECT_PHRASE = re.compile(r"^an? (\w+) (\w+)(?: (?:moving (\w+)|standing (still)))?$")


def parse_caption(caption: str) -> list[tuple[str, str, str | None]]:
    """'a red circle moving left and a blue square standing still' -> [(colour, shape, motion), ...].

    Motion is None when the caption does not mention it (captions of single images).
    """
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str like 'a red circle moving left', got {type(caption).__name__}")
    objects = []
    for phrase in caption.strip().lower().split(" and "):
        match = _OBJECT_PHRASE.match(phrase.strip())
        if match is None:
            raise ValueError(f"cannot parse {phrase!r}: expected 'a <colour> <shape> [moving <direction> | "
                             f"standing still]' joined by ' and '")
        colour, shape, direction, still = match.groups()
        motion = still or direction
        if colour not in PALETTE or shape not in SHAPES or (motion is not None and motion not in MOTIONS):
            raise ValueError(f"unknown words in {phrase!r}: colours {COLOURS}, shapes {SHAPES}, motions {MOTIONS}")
        objects.append((colour, shape, motion))
    return objects


def _prompted_objects(objects_or_captions, batch: int) -> list[list[tuple[str, str, str | None]]]:
    if isinstance(objects_or_captions, ToyBatch):
        objects_or_captions = objects_or_captions.objects
    if isinstance(objects_or_captions, str) or not isinstance(objects_or_captions, (list, tuple)):
        raise TypeError("objects_or_captions must be a ToyBatch, a list of captions or a list of lists of "
                        f"ToyObject (one per video), got {type(objects_or_captions).__name__}")
    if len(objects_or_captions) != batch:
        raise ValueError(f"got {len(objects_or_captions)} prompts for {batch} videos: need one per video (B)")
    prompted = []
    for item in objects_or_captions:
        if isinstance(item, str):
            prompted.append(parse_caption(item))
        elif isinstance(item, (list, tuple)) and all(isinstance(o, ToyObject) for o in item):
            prompted.append([(o.colour, o.shape, o.motion) for o in item])
        else:
            raise TypeError(f"each prompt must be a caption str or a list of ToyObject, got {type(item).__name__}")
    return prompted


def _match(prompted: list[tuple], seen: list[SeenObject]) -> list[SeenObject | None]:
    """Pair each prompted object with a distinct seen one (or None), agreeing on as much as possible.

    Colour counts most, then shape, then motion, so a recoloured object still pairs with its prompt.
    """
    candidates = list(seen) + [None] * len(prompted)
    best, best_score = None, -1
    for chosen in itertools.permutations(range(len(candidates)), len(prompted)):
        score = 0
        for (colour, shape, motion), index in zip(prompted, chosen):
            obj = candidates[index]
            if obj is not None:
                score += 4 * (obj.colour == colour) + 2 * (obj.shape == shape) + (obj.motion == motion)
        if score > best_score:
            best, best_score = chosen, score
    return [candidates[i] for i in best]


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


@torch.no_grad()
def score_videos(video: Tensor, objects_or_captions) -> dict[str, float]:
    """Scores of a (B, 3, T, H, W) batch against its prompts (captions, ToyObject lists or a ToyBatch).

    Accuracies are fractions in [0, 1] (colour/shape/motion per prompted object, caption per video);
    errors and flicker are in RGB [0, 1] units. For single frames (T = 1) motion is not judged:
    "motion_accuracy", "temporal_consistency" and "background_flicker" are nan, and captions are
    compared on (colour, shape) only.
    """
    video = _as_video_batch(video)
    frames = video.shape[2]
    prompted = _prompted_objects(objects_or_captions, video.shape[0])
    seen = read_video(video)
    judge_motion = frames > 1

    caption_hits, colour_hits, shape_hits, motion_hits = [], [], [], []
    for prompt, objects in zip(prompted, seen):
        if judge_motion:
            caption_hits.append(sorted(prompt) == sorted(o.as_tuple() for o in objects))
        else:
            caption_hits.append(sorted(p[:2] for p in prompt) == sorted(o.as_tuple()[:2] for o in objects))
        for (colour, shape, motion), obj in zip(prompt, _match(prompt, objects)):
            colour_hits.append(obj is not None and obj.colour == colour)
            shape_hits.append(obj is not None and obj.shape == shape)
            if judge_motion:
                motion_hits.append(obj is not None and obj.motion == motion)

    all_seen = [o for objects in seen for o in objects]
    rgb = (video.detach().cpu().float() + 1) / 2
    labels = torch.cat([label_pixels(chunk) for chunk in rgb.split(READ_CHUNK)])
    background = labels == BACKGROUND_LABEL                                    # (B, T, H, W)
    pixel_count = background.sum((1, 2, 3)).clamp(min=1)
    mean_background = torch.einsum("bcthw,bthw->bc", rgb, background.float()) / pixel_count[:, None]
    background_error = (mean_background - torch.tensor(BACKGROUND, dtype=torch.float32)).norm(dim=-1)
    background_error = background_error[background.any((1, 2, 3))]
    flicker = float("nan")
    if judge_motion:
        both = background[:, 1:] & background[:, :-1]                         # background in both frames
        change = (rgb[:, :, 1:] - rgb[:, :, :-1]).abs().mean(1)                # (B, T-1, H, W)
        flicker = float(change[both].mean()) if both.any() else float("nan")

    return {
        "caption_accuracy": _mean(caption_hits),
        "colour_accuracy": _mean(colour_hits),
        "shape_accuracy": _mean(shape_hits),
        "motion_accuracy": _mean(motion_hits) if judge_motion else float("nan"),
        "temporal_consistency": _mean([o.consistent for o in all_seen]) if judge_motion else float("nan"),
        "background_flicker": flicker,
        "colour_error": _mean([o.colour_error for o in all_seen]),
        "background_error": float(background_error.mean()) if len(background_error) else float("nan"),
    }


@torch.no_grad()
def colour_fidelity(video: Tensor, max_objects: int = 2) -> dict[str, float]:
    """How faithful a batch's colours are to the toy world, with no prompt needed (chapter 1's
    colour-shift measurement). All distances are L2 in RGB [0, 1] units.

    * "palette_distance": mean over every pixel of its distance to the nearest true colour (palette
      or background): any drift of colours raises it, whatever the content.
    * "object_colour_error": mean distance of each seen object's mean colour to its palette colour.
    * "background_error": mean distance of the background pixels' mean colour to BACKGROUND.
    * "readable_fraction": fraction of videos that read as clean toy-world scenes: one object up to
      ``max_objects``, and at most 10% of pixels far from every true colour.
    """
    video = _as_video_batch(video)
    rgb = (video.detach().cpu().float().clamp(-1, 1) + 1) / 2
    references = torch.tensor(list(PALETTE.values()) + [BACKGROUND], dtype=rgb.dtype)
    pixels = rearrange(rgb, "b c t h w -> (b t h w) c")
    palette_distance = torch.cdist(pixels, references).min(dim=-1).values.mean()
    seen = read_video(video)
    labels = label_pixels(rgb)
    unknown_fraction = (labels == UNKNOWN_LABEL).float().mean((1, 2, 3))
    readable = [1 <= len(objects) <= max_objects and unknown <= 0.1 for objects, unknown in zip(seen, unknown_fraction)]
    background = labels == BACKGROUND_LABEL
    counts = background.sum((1, 2, 3))
    mean_background = torch.einsum("bcthw,bthw->bc", rgb, background.float()) / counts.clamp(min=1)[:, None]
    background_error = (mean_background - torch.tensor(BACKGROUND))[counts > 0].norm(dim=-1)
    return {
        "palette_distance": float(palette_distance),
        "object_colour_error": _mean([o.colour_error for objects in seen for o in objects]),
        "background_error": float(background_error.mean()) if len(background_error) else float("nan"),
        "readable_fraction": _mean(readable),
    }


@torch.no_grad()
def seam_scores(video: Tensor, seams: list[int]) -> dict[str, float]:
    """How well a video generated in pieces holds together where the pieces meet.

    ``seams`` are the frame indices where a new piece starts (frame s follows s - 1). For every object
    the oracle sees, at every seam: does it exist on both sides, how far does it jump beyond its usual
    per-frame step (pixels), how much does its size change (fraction), and is its colour the same
    palette colour throughout (the oracle tracks objects by colour). A continuous video scores
    persistence 1, jump ~0 and size change ~0.
    """
    video = _as_video_batch(video)
    frames = video.shape[2]
    if not seams or any(isinstance(s, bool) or not isinstance(s, int) or not 0 < s < frames for s in seams):
        raise ValueError(f"seams must be a non-empty list of frame indices in 1..{frames - 1}, got {seams!r}")
    persisted, jumps, size_changes = [], [], []
    for objects in read_video(video):
        for obj in objects:
            present = ~torch.isnan(obj.trajectory[:, 0])
            steps = (obj.trajectory[1:] - obj.trajectory[:-1]).norm(dim=1)  # step into frame f + 1 at index f
            ordinary = [steps[f] for f in range(frames - 1) if f + 1 not in seams and torch.isfinite(steps[f])]
            usual_step = torch.stack(ordinary).median() if ordinary else torch.tensor(0.0)
            for s in seams:
                both_sides = bool(present[s - 1] and present[s])
                persisted.append(both_sides)
                if both_sides:
                    jumps.append(float((steps[s - 1] - usual_step).abs()))
                    before, after = float(obj.area[s - 1]), float(obj.area[s])
                    size_changes.append(abs(after - before) / max(before, after))
    return {"persistence": _mean([float(p) for p in persisted]), "position_jump": _mean(jumps),
            "size_change": _mean(size_changes), "object_seams": float(len(persisted))}
