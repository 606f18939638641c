"""Which output frames read which input frames: the influence matrix of a video model, and its plot.

Change input frame j a little and measure how much each output frame i moves: entry (i, j). A model that runs
an image model on every frame has a diagonal matrix; temporal layers fill the rest (a (3, 1, 1) convolution
the neighbours, attention over time every frame).
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from minivdm.validation import check_video


@torch.no_grad()
def frame_influence(model_fn: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor, *,
                    delta: float = 0.5) -> torch.Tensor:
    """(T, T): mean |change| of output frame i when ``delta`` is added to input frame j of ``video`` (1, C, T, H, W)."""
    check_video(video, "video")
    if video.shape[0] != 1:
        raise ValueError(f"video must hold one clip (1, C, T, H, W), got {tuple(video.shape)}")
    base = model_fn(video)
    frames = video.shape[2]
    matrix = torch.zeros(frames, frames)
    for j in range(frames):
        changed = video.clone()
        changed[:, :, j] += delta
        matrix[:, j] = (model_fn(changed) - base).abs().mean(dim=(0, 1, 3, 4)).float().cpu()
    return matrix


def plot_frame_influence(matrix: torch.Tensor, *, title: str) -> Figure:
    """The influence matrix as an image: output frame on the rows, changed input frame on the columns."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square (T, T), got {tuple(matrix.shape)}")
    figure, axis = plt.subplots(figsize=(4.6, 3.8))
    shown = axis.imshow(matrix.numpy(), cmap="magma", vmin=0)
    frames = matrix.shape[0]
    axis.set_xticks(range(frames), [str(j + 1) for j in range(frames)])
    axis.set_yticks(range(frames), [str(i + 1) for i in range(frames)])
    axis.set_xlabel("input frame changed")
    axis.set_ylabel("output frame")
    axis.set_title(title, fontsize=10)
    figure.colorbar(shown, ax=axis, label="mean |change| of the output")
    figure.tight_layout()
    return figure
