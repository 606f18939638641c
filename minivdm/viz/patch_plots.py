"""Chapter 11's figures: a video cut into spacetime patches, which tokens one token attends to under full and factorised
attention, and attention masks (packing). Pure functions of tensors that return matplotlib figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minivdm.nn.patches import grid_positions, token_grid
from minivdm.validation import check_tensor

ATTENTION_REACH = ("full", "spatial", "temporal")


def _frame_image(frame: torch.Tensor) -> np.ndarray:
    return ((frame.permute(1, 2, 0).float().clamp(-1, 1) + 1) / 2).numpy()


def attention_reach(grid: tuple[int, int, int], query: tuple[int, int, int], mode: str) -> torch.Tensor:
    """(T', H', W') bool: the tokens that token ``query`` = (t', h', w') attends to in one attention layer.
    "full": every token (CogVideoX's 3D attention); "spatial": the tokens of its own frame group (Latte's spatial block);
    "temporal": the tokens at its own position in every frame group (Latte's temporal block)."""
    if mode not in ATTENTION_REACH:
        raise ValueError(f"mode must be one of {ATTENTION_REACH}, got {mode!r}")
    if len(query) != 3 or not all(0 <= q < g for q, g in zip(query, grid)):
        raise ValueError(f"query must be a (t', h', w') token position inside the grid {grid}, got {query}")
    positions = grid_positions(grid).reshape(*grid, 3)
    t, h, w = query
    if mode == "full":
        return torch.ones(grid, dtype=torch.bool)
    if mode == "spatial":
        return positions[..., 0] == t
    return (positions[..., 1] == h) & (positions[..., 2] == w)


def plot_token_grid(video: torch.Tensor, patch: tuple[int, int, int], *, title: str,
                    reach: torch.Tensor | None = None, query: tuple[int, int, int] | None = None) -> Figure:
    """The frames of one video (C, T, H, W) with the patch boundaries drawn: each p_t consecutive frames share one row of
    tokens (same tint of the frame border), each p_h x p_w box is one token. With ``reach`` ((T', H', W') bool, e.g.
    from ``attention_reach``) the tokens reached are tinted and the ``query`` token is outlined in red."""
    check_tensor(video, "video", ndim=4, layout="(C, T, H, W)")
    frames, height, width = video.shape[1:]
    grid = token_grid(frames, height, width, patch)
    p_t, p_h, p_w = patch
    figure, axes = plt.subplots(1, frames, figsize=(1.3 * frames * width / height, 1.9), squeeze=False)
    group_colours = plt.cm.tab10(np.arange(grid[0]) % 10)
    for index, axis in enumerate(axes[0]):
        axis.imshow(_frame_image(video[:, index]), interpolation="nearest")
        group = index // p_t
        for edge in range(0, width + 1, p_w):
            axis.axvline(edge - 0.5, color="white", linewidth=0.6, alpha=0.8)
        for edge in range(0, height + 1, p_h):
            axis.axhline(edge - 0.5, color="white", linewidth=0.6, alpha=0.8)
        if reach is not None:
            for h in range(grid[1]):
                for w in range(grid[2]):
                    if reach[group, h, w]:
                        axis.add_patch(Rectangle((w * p_w - 0.5, h * p_h - 0.5), p_w, p_h, color="yellow", alpha=0.35))
            if query is not None and query[0] == group:
                axis.add_patch(Rectangle((query[2] * p_w - 0.5, query[1] * p_h - 0.5), p_w, p_h, fill=False,
                                         edgecolor="red", linewidth=2))
        for spine in axis.spines.values():
            spine.set_edgecolor(group_colours[group]), spine.set_linewidth(3)
        axis.set_xticks([]), axis.set_yticks([])
        axis.set_title(f"frame {index}\ntokens t'={group}", fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def plot_attention_mask(mask: torch.Tensor, *, title: str, boundaries: list[int] | None = None,
                        labels: tuple[str, str] = ("key token", "query token")) -> Figure:
    """An (L, L) bool attention mask (True = may attend), with optional lines at segment ``boundaries``."""
    check_tensor(mask, "mask", ndim=2, layout="(L, L)")
    figure, axis = plt.subplots(figsize=(4.2, 4.0))
    axis.imshow(mask.float().numpy(), cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    for boundary in boundaries or []:
        axis.axhline(boundary - 0.5, color="tab:red", linewidth=0.8), axis.axvline(boundary - 0.5, color="tab:red", linewidth=0.8)
    axis.set_xlabel(labels[0]), axis.set_ylabel(labels[1])
    allowed = mask.float().mean().item()
    axis.set_title(f"{title}\n({allowed:.0%} of the {mask.shape[0]}x{mask.shape[1]} pairs attend)", fontsize=9)
    figure.tight_layout()
    return figure
