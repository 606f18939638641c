r"""Pictures of what the factorised space-time U-Net mixes (the "Video Diffusion Models" chapter).

* ``perturbation_response``: nudge one pixel of one frame at a layer's input and measure, for every
  (frame, pixel) of its output, how much it moved. Per-frame layers stay inside the frame; temporal
  attention stays at the pixel, across frames.
* ``temporal_attention_weights``: the softmax weights A_ij = softmax_j(q_i . (k_j + a[d]) / sqrt(d_head)
  + b[d] + M_ij), d = clip(j - i, -K, K), that a ``TemporalAttention`` layer uses, per pixel and head,
  shape (T, T) each.
* ``record_inputs``: the arguments each of some modules receives during one forward pass, so a
  layer can be re-run on its real inputs.

Pure functions: computations return tensors, plots return matplotlib Figures that the tutorial's
widgets display.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from einops import rearrange
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import nn

from minivdm.nn.relative_position import TemporalAttention
from minivdm.validation import check_positive_int, check_video


def record_inputs(modules: dict[str, nn.Module], run: Callable[[], object]) -> dict[str, tuple[tuple, dict]]:
    """Call ``run()`` once and return, for each named module, the (args, kwargs) of its last call."""
    recorded, hooks = {}, []
    for name, module in modules.items():
        def hook(module, args, kwargs, name=name):
            recorded[name] = (args, kwargs)
        hooks.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        run()
    finally:
        for handle in hooks:
            handle.remove()
    missing = sorted(set(modules) - set(recorded))
    if missing:
        raise ValueError(f"these modules were not called by run(): {missing}")
    return recorded


@torch.no_grad()
def perturbation_response(layer_fn: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, frame: int,
                          pixel: tuple[int, int], delta: float = 1.0) -> torch.Tensor:
    """|layer_fn(features + delta at one (frame, pixel)) - layer_fn(features)|, L2 over channels, for item 0.

    ``features`` is a video-shaped input (B, C, T, H, W); ``layer_fn`` maps it to (B, C', T, H', W').
    The nudge is ``delta`` times a fixed random direction over the channels (seeded, unit variance):
    adding the same constant to every channel would be invisible to a LayerNorm, which subtracts
    the channel mean. Returns (T, H', W').
    """
    check_video(features, "features")
    _, _, num_frames, height, width = features.shape
    y, x = pixel
    if not (0 <= frame < num_frames and 0 <= y < height and 0 <= x < width):
        raise ValueError(f"frame and pixel must index the features (B, C, T, H, W) = {tuple(features.shape)}, "
                         f"got frame={frame}, pixel={pixel}")
    nudged = features.clone()
    direction = torch.randn(features.shape[1], generator=torch.Generator().manual_seed(0))
    nudged[:, :, frame, y, x] += delta * direction.to(features)
    change = layer_fn(nudged)[0] - layer_fn(features)[0]
    return change.float().norm(dim=0)


@torch.no_grad()
def temporal_attention_weights(layer: TemporalAttention, x: torch.Tensor, num_frames: int,
                               num_images: int = 0, condition: torch.Tensor | None = None) -> torch.Tensor:
    """The attention weights of ``layer`` on its input x ((B T), C, H, W): (B, H, W, heads, T, T).

    weights[b, y, x, h, i, j] is how much frame i attends to frame j at pixel (y, x) in head h; each
    row sums to 1 and is 0 where the frame mask forbids attention. ``condition``: the per-frame
    caption vector a layer built with ``condition_dim`` takes (the arguments ``record_inputs`` saw).
    """
    check_positive_int(num_frames, "num_frames")
    if x.ndim != 4 or x.shape[0] % num_frames:
        raise ValueError(f"x must be ((B T), C, H, W) with B*T divisible by num_frames={num_frames}, "
                         f"got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    weights = layer.attention_weights(layer.tokens(x, num_frames, condition), num_frames, num_images).float()
    return rearrange(weights, "(b h w) heads i j -> b h w heads i j", h=height, w=width)


def plot_perturbation_response(response: torch.Tensor, frame: int, pixel: tuple[int, int], *, title: str) -> Figure:
    """One panel per output frame of a (T, H, W) response, log colour scale; exact zeros are black."""
    response = response.detach().cpu().float()
    num_frames = response.shape[0]
    touched = [t for t in range(num_frames) if response[t].max() > 0]
    positive = response[response > 0]
    high = float(positive.max()) if len(positive) else 1.0
    # seven decades below the largest change: float32 round-off noise stays visible but dim
    low = min(max(float(positive.min()), high * 1e-7), high / 10) if len(positive) else high / 10
    colours = colormaps["viridis"].with_extremes(bad="black")
    figure = Figure(figsize=(1.5 * num_frames + 1.2, 2.3), layout="constrained")
    axes = figure.subplots(1, num_frames, squeeze=False)[0]
    for t, axis in enumerate(axes):
        shown = np.ma.masked_less_equal(response[t].numpy(), 0.0)
        image = axis.imshow(shown, cmap=colours, norm=LogNorm(vmin=low, vmax=high))
        axis.set_title(f"frame {t}" + (" (nudged)" if t == frame else ""), fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
        if t == frame:
            axis.plot(pixel[1], pixel[0], marker="s", markersize=6, markerfacecolor="none", markeredgecolor="red")
    axes[0].set_xlabel("x (pixel)")
    axes[0].set_ylabel("y (pixel)")
    figure.colorbar(image, ax=list(axes), label="|change| (log)", shrink=0.9)
    figure.suptitle(f"{title}\noutputs changed in frames {touched}; black = exactly unchanged")
    return figure


def plot_temporal_attention(weights: torch.Tensor, bias_table: torch.Tensor, head: int, *, title: str) -> Figure:
    """Left: one head's (T, T) attention weights. Right: every head's learned bias b[d] against distance d = j - i.

    ``bias_table`` is b's table (heads, 2K + 1), ``TemporalAttention.bias_b.table``.
    """
    weights = weights.detach().cpu().float()
    bias_table = bias_table.detach().cpu().float()
    num_frames = weights.shape[-1]
    heads, table_size = bias_table.shape
    max_distance = (table_size - 1) // 2
    figure = Figure(figsize=(9.5, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.4])
    image = left.imshow(weights.numpy(), cmap="magma", vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    left.set_xlabel("key frame j (attended to)")
    left.set_ylabel("query frame i")
    left.set_xticks(range(num_frames))
    left.set_yticks(range(num_frames))
    left.set_title(f"attention weights, head {head}")
    figure.colorbar(image, ax=left, label="weight (rows sum to 1)", shrink=0.85)
    distances = np.arange(-max_distance, max_distance + 1)
    for h in range(heads):
        right.plot(distances, bias_table[h].numpy(), marker="o", markersize=3 if h == head else 2,
                   linewidth=2.2 if h == head else 0.8, alpha=1.0 if h == head else 0.5, label=f"head {h}")
    right.axvspan(-(num_frames - 1), num_frames - 1, color="grey", alpha=0.12, label=f"used by T={num_frames}")
    right.axvline(0, color="black", linewidth=0.5)
    right.set_xlabel("relative distance d = j - i (frames)")
    right.set_ylabel("learned bias b[d] (added to logits)")
    right.set_title("relative position bias b")
    right.legend(fontsize=7, loc="best")
    figure.suptitle(title)
    return figure


def plot_frame_mask(allowed: torch.Tensor, changes: dict[str, torch.Tensor], num_images: int, *, title: str) -> Figure:
    """Left: the (T, T) mask of joint video-image training. Right: per-frame output change for each run."""
    allowed = allowed.detach().cpu()
    num_frames = allowed.shape[0]
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.5])
    left.imshow(allowed.numpy(), cmap="Greens", vmin=0, vmax=1.3)
    left.set_xticks(range(num_frames))
    left.set_yticks(range(num_frames))
    left.set_xlabel("key frame j")
    left.set_ylabel("query frame i")
    left.axhline(num_frames - num_images - 0.5, color="black", linewidth=0.8)
    left.axvline(num_frames - num_images - 0.5, color="black", linewidth=0.8)
    left.set_title(f"may frame i attend to j? (last {num_images} = images)")
    frames = np.arange(num_frames)
    bar_width = 0.8 / max(len(changes), 1)
    smallest = min([float(c[c > 0].min()) for c in changes.values() if (c > 0).any()] or [1e-6])
    for index, (label, change) in enumerate(changes.items()):
        change = change.detach().cpu().float().numpy()
        positions = frames + (index - (len(changes) - 1) / 2) * bar_width
        right.bar(positions, np.where(change > 0, change, np.nan), width=bar_width, label=label)
        for position, value in zip(positions, change):
            if value == 0:
                right.text(position, smallest, "0", ha="center", va="bottom", fontsize=7)
    right.set_yscale("log")
    right.set_xticks(frames, [f"{t}" + ("\nimage" if t >= num_frames - num_images else "") for t in frames])
    right.set_xlabel("output frame")
    right.set_ylabel("max |change| of the prediction")
    right.set_title("change one appended image: which frames move?")
    right.legend(fontsize=8)
    figure.suptitle(title)
    return figure
