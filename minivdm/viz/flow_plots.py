"""Pictures of optical flow: arrows over the frame, and the colour-wheel code.

Flow is minivdm's convention from ``minivdm.curation.optical_flow``: (2, H, W) in pixels, channel 0 =
dx (right), channel 1 = dy (down), content at x in the first frame is at x + flow(x) in the second.

* ``flow_to_colour``: the usual colour-wheel code (Baker et al. 2011, the Middlebury flow benchmark):
  hue = direction, saturation = magnitude (white = still), as an (H, W, 3) image.
* ``plot_flow``: the frame with the flow drawn over it as arrows (true length, in pixels), and/or
  the colour-coded flow with its wheel as a key.

Pure functions: they return numpy images or matplotlib Figures that the tutorial displays.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure

from minivdm.validation import check_tensor

MODES = ("quiver", "colour", "both")


def _check_flow(flow) -> torch.Tensor:
    check_tensor(flow, "flow", ndim=3, layout="(2, H, W) (dx, dy) in pixels", floating=True)
    if flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W) (dx, dy) in pixels, got shape {tuple(flow.shape)}")
    return flow.detach().cpu().float()


def flow_to_colour(flow: torch.Tensor, max_magnitude: float | None = None) -> np.ndarray:
    """(2, H, W) flow -> (H, W, 3) RGB in [0, 1]: hue = direction of motion, saturation = |flow| / max.

    Hue 0 (red) is motion to the right, and the hue turns with the angle atan2(dy, dx) measured with y
    down (so a quarter turn after red is motion downwards). Zero flow is white. ``max_magnitude``
    (pixels) is the magnitude shown fully saturated; default: the largest in the field.
    """
    flow = _check_flow(flow).numpy()
    dx, dy = flow[0], flow[1]
    magnitude = np.hypot(dx, dy)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max())
    elif isinstance(max_magnitude, bool) or not isinstance(max_magnitude, (int, float)) or max_magnitude <= 0:
        raise ValueError(f"max_magnitude must be a positive number of pixels, got {max_magnitude!r}")
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    saturation = np.clip(magnitude / max(max_magnitude, 1e-12), 0.0, 1.0)
    return hsv_to_rgb(np.stack([hue, saturation, np.ones_like(hue)], axis=-1))


def colour_wheel(size: int = 64) -> np.ndarray:
    """(size, size, 3) key of ``flow_to_colour``: the colour of a flow pointing from the centre to each
    pixel, saturated at the rim; white outside the disc."""
    offsets = np.arange(size) - (size - 1) / 2
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    flow = torch.from_numpy(np.stack([dx, dy])).float()
    wheel = flow_to_colour(flow, max_magnitude=size / 2)
    wheel[np.hypot(dx, dy) > size / 2] = 1.0
    return wheel


def _frame_image(frame) -> np.ndarray:
    check_tensor(frame, "frame", ndim=3, layout="(C, H, W) in [-1, 1] with C = 1 or 3", floating=True)
    if frame.shape[0] not in (1, 3):
        raise ValueError(f"frame must be (C, H, W) in [-1, 1] with C = 1 or 3, got shape {tuple(frame.shape)}")
    image = rearrange(((frame.detach().cpu().float() + 1) / 2).clamp(0, 1), "c h w -> h w c").numpy()
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def plot_flow(frame: torch.Tensor, flow: torch.Tensor, *, mode: str = "both", step: int = 2,
              max_magnitude: float | None = None, title: str = "optical flow") -> Figure:
    """The flow (2, H, W) drawn over ``frame`` (C, H, W) in [-1, 1], the first frame of the pair.

    mode "quiver": arrows every ``step`` pixels, drawn at their true length (pixels), from where the
    content is in this frame to where it goes. "colour": the colour-coded flow (``flow_to_colour``)
    with the wheel as a key. "both": the two side by side.
    """
    flow = _check_flow(flow)
    image = _frame_image(frame)
    if image.shape[:2] != tuple(flow.shape[-2:]):
        raise ValueError(f"frame (C, H, W) and flow (2, H, W) must have the same H, W, "
                         f"got {tuple(frame.shape)} and {tuple(flow.shape)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive int (pixels between arrows), got {step!r}")
    magnitude = flow.norm(dim=0)
    panels = ["quiver", "colour"] if mode == "both" else [mode]
    figure = Figure(figsize=(4.2 * len(panels) + 0.6, 4.2), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, panel in zip(axes, panels):
        if panel == "quiver":
            axis.imshow(image, interpolation="nearest")
            ys, xs = np.mgrid[0: image.shape[0]: step, 0: image.shape[1]: step]
            dx, dy = flow[0, ::step, ::step].numpy(), flow[1, ::step, ::step].numpy()
            # angles/scale in data units: an arrow is exactly the displacement; y points down as in the image.
            axis.quiver(xs, ys, dx, dy, angles="xy", scale_units="xy", scale=1, color="white",
                        edgecolor="black", linewidth=0.3, width=0.006)
            axis.set_title(f"flow over the frame (arrows in pixels, max {float(magnitude.max()):.2f} px)", fontsize=9)
        else:
            axis.imshow(flow_to_colour(flow, max_magnitude), interpolation="nearest")
            key = axis.inset_axes([0.78, 0.78, 0.2, 0.2])
            key.imshow(colour_wheel())
            key.set_xticks([])
            key.set_yticks([])
            key.set_title("direction", fontsize=6)
            shown = float(magnitude.max()) if max_magnitude is None else float(max_magnitude)
            axis.set_title(f"colour code (hue = direction, white = still; full colour = {shown:.2f} px)", fontsize=9)
        axis.set_xlabel("x (pixel)")
        axis.set_ylabel("y (pixel)")
        axis.set_xlim(-0.5, image.shape[1] - 0.5)
        axis.set_ylim(image.shape[0] - 0.5, -0.5)
    figure.suptitle(f"{title}: mean |flow| {float(magnitude.mean()):.2f} px")
    return figure
