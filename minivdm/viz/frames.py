"""Still pictures of videos: a grid of frames as an array, or as a titled matplotlib figure.

Both take one video (C, T, H, W) or a batch (B, C, T, H, W) in [-1, 1] and lay it out with one row
per video and one column per frame, so motion reads left to right and batch items top to bottom.
They only build and return things; nothing is displayed or saved here.
"""

from __future__ import annotations

import textwrap

import numpy as np
import torch
from einops import rearrange, repeat
from matplotlib.figure import Figure

from minivdm.io.video_files import to_rgb_batch, video_to_frames
from minivdm.validation import check_positive_int

# White separators: toy-world backgrounds are dark, so tiles stay distinct.
PAD_VALUE = 255
# Largest width of a plot_frames figure, in inches; tiles shrink to fit long videos.
MAX_FIGURE_WIDTH = 14.0


def batch_to_frames(video) -> np.ndarray:
    """One video (C, T, H, W) or a batch (B, C, T, H, W) -> uint8 RGB frames (B, T, H, W, 3)."""
    batch = to_rgb_batch(video)
    return np.stack([video_to_frames(one_video) for one_video in batch])


def frame_grid(video, *, padding: int = 1, scale: int = 1) -> np.ndarray:
    """All frames in one uint8 image (H', W', 3): row b holds the frames of video b, left to right.

    Each frame is upscaled ``scale`` times (nearest neighbour) and tiles are separated, and framed,
    by ``padding`` white pixels, so H' = padding + B * (scale * H + padding), likewise W' with T and W.
    """
    check_positive_int(scale, "scale")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    frames = batch_to_frames(video)
    frames = repeat(frames, "b t h w c -> b t (h sh) (w sw) c", sh=scale, sw=scale)
    # Pad every tile at its bottom and right, lay the tiles out, then add the top and left border.
    tiles = np.pad(frames, ((0, 0), (0, 0), (0, padding), (0, padding), (0, 0)), constant_values=PAD_VALUE)
    grid = rearrange(tiles, "b t h w c -> (b h) (t w) c")
    return np.pad(grid, ((padding, 0), (padding, 0), (0, 0)), constant_values=PAD_VALUE)


def _shown_frame_indices(num_frames: int, max_frames: int | None) -> list[int]:
    """All frames, or ``max_frames`` of them evenly spaced from the first to the last."""
    if max_frames is None or max_frames >= num_frames:
        return list(range(num_frames))
    return sorted({round(index) for index in np.linspace(0, num_frames - 1, max_frames)})


def plot_frames(video, *, title: str | None = None, row_labels: list[str] | None = None,
                max_frames: int | None = None) -> Figure:
    """A figure with one row per video and one column per frame, columns titled "t=0", "t=1", ...

    ``row_labels`` (one per video, e.g. captions) label the rows; without them rows are "b=0", "b=1", ...
    ``max_frames`` keeps that many frames, evenly spaced, and the column titles say which ones.
    The figure is built without pyplot, so it appears once when returned from a notebook cell.
    """
    frames = batch_to_frames(video)
    num_videos, num_frames, height, width, _ = frames.shape
    if max_frames is not None:
        check_positive_int(max_frames, "max_frames")
    if row_labels is not None:
        if isinstance(row_labels, str) or not all(isinstance(label, str) for label in row_labels):
            raise TypeError(f"row_labels must be a list of str, one per video, got {row_labels!r}")
        if len(row_labels) != num_videos:
            raise ValueError(f"row_labels must have one label per video ({num_videos}), got {len(row_labels)}")
    else:
        row_labels = [f"b={b}" for b in range(num_videos)] if num_videos > 1 else [""]
    if title is None:
        videos = "1 video" if num_videos == 1 else f"{num_videos} videos"
        title = f"Frames of {videos} (T={num_frames}, {height}x{width})"

    shown = _shown_frame_indices(num_frames, max_frames)
    tile_inches = min(1.4, MAX_FIGURE_WIDTH / (len(shown) + 1))
    label_inches = 1.6 if any(row_labels) else 0.2
    figure = Figure(figsize=(label_inches + tile_inches * len(shown), 0.6 + tile_inches * num_videos),
                    layout="constrained")
    axes = figure.subplots(num_videos, len(shown), squeeze=False)
    for b in range(num_videos):
        for column, t in enumerate(shown):
            ax = axes[b, column]
            ax.imshow(frames[b, t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(f"frame {t}", fontsize=9)
        axes[b, 0].set_ylabel(textwrap.fill(row_labels[b], 18), rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(title)
    return figure


def plot_images(images, *, columns: int = 8, title: str, row_labels: list[str] | None = None) -> Figure:
    """A titled figure of images (N, C, H, W) in [-1, 1], ``columns`` per row (e.g. samples of a model)."""
    from minivdm.validation import check_image

    check_image(images, "images")
    check_positive_int(columns, "columns")
    rows = -(-images.shape[0] // columns)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels must have one label per row ({rows}), got {len(row_labels)}")
    images = images.detach().cpu().float()
    blanks = torch.ones(rows * columns - images.shape[0], *images.shape[1:])  # white tiles end the last row
    grid = frame_grid(rearrange(torch.cat([images, blanks]), "(r n) c h w -> r c n h w", n=columns), scale=2)
    figure = Figure(figsize=(1.0 * columns + (1.6 if row_labels else 0.2), 1.0 * rows + 0.5), layout="constrained")
    axis = figure.subplots()
    axis.imshow(grid, interpolation="nearest")
    axis.set_xticks([])
    tile = (grid.shape[0] - 1) / rows
    axis.set_yticks([tile * (r + 0.5) for r in range(rows)], row_labels or [""] * rows)
    axis.set_title(title)
    return figure
